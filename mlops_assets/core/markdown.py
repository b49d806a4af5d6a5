"""Text from data or a spec, made safe to show in the Dagster UI's markdown metadata.

Feature names come from a team's spec and values from landed files: a ``|`` in one split a drift
table's row, and ``[x](http://…)`` became a live link in the UI. What would make a table cell,
link, image, tag, code span or emphasis (``| [ ] ( ) < > ` *`` and the backslash) is escaped with a
backslash, and a line break becomes a space; ``_`` is left alone, so snake_case names read as they
are (within a word it emphasises nothing).
"""

from __future__ import annotations

import re
from typing import Any

_SPECIAL = re.compile(r"([\\`*\[\]()<>|])")


def escape(value: Any) -> str:
    """``value`` as text that markdown shows as it is."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines()))


def table(frame) -> str:
    """A pandas frame as a markdown table, every header and cell escaped."""
    shown = frame.rename(columns=escape).astype(object).map(lambda v: escape(v) if isinstance(v, str) else v)
    return shown.to_markdown(index=False)
