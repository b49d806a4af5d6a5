"""Credentials carried inside URLs, removed before text reaches an exception, a log, the UI or an alert.

A SAS URL (ACR build logs, upload links, blob links) is a bearer credential in its query string.
"""

import re

# The query string of any URL that carries a SAS signature (sig=...), up to whitespace or a quote;
# a sentence's full stop or comma after the URL is left in place.
_SAS_QUERY = re.compile(
    r"(https?://[^\s?'\"<>]+)\?[^\s'\"<>]*\bsig=(?:[^\s'\"<>]*[^\s'\"<>.,;:)])?", re.IGNORECASE
)
REDACTED = "?<SAS token removed>"


def redact_sas(text: str) -> str:
    """``text`` with the query string of every SAS URL replaced; the URL's path stays, for reference."""
    return _SAS_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
