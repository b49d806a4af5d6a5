"""A spill folder's file names: the contract between the request log's writers (serving/), which
spill, claim and deliver files there, and the local host (hosting/), which hands a dead
deployment's folder to its successor.

``<day>/<batch>.jsonl`` waits for delivery; a writer claims one by renaming it to
``....jsonl.claim-<pid>-<hex>`` before sending it, and writes a new one as ``....tmp-<pid>-<hex>``
before renaming it into place (so a half-written file is never taken for a whole one).
"""

from __future__ import annotations

import re

SPILLED_SUFFIX = ".jsonl"
CLAIM = re.compile(r"\.(claim|tmp)-(\d+)-[0-9a-f]+$")  # a spilled file taken, or being written


def waiting_name(name: str) -> str | None:
    """The name a file of a spill folder has while it waits for delivery: its own for a waiting
    file, the one it was claimed from for a claimed one; None for a file still being written
    (what it holds is partial) and anything else."""
    found = CLAIM.search(name)
    if found is not None:
        return name[: found.start()] if found.group(1) == "claim" else None
    return name if name.endswith(SPILLED_SUFFIX) else None
