"""How big a service of a build context is: its project's ``[serving]`` (workers, CPUs), as the
context carries it in the packaged serving spec, else the runtime's own default. Every runtime
reads it here, so a process, a local container, ACI and AKS size the same release alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlops_assets.hosting.build_layout import SERVING_SPEC


@dataclass(frozen=True)
class Sizing:
    workers: int
    cpus: float | None  # None: the runtime leaves CPUs as they are (a process, AKS's manifest)


LOCAL = Sizing(workers=1, cpus=1.0)  # a local process or container: one worker on one CPU
CLOUD = Sizing(workers=2, cpus=None)  # ACI (its spec's CPUs) and AKS (its manifest's limit)


def sizing(context: Path | None, default: Sizing) -> Sizing:
    """``default`` with what the context's project sets in its place."""
    path = context / SERVING_SPEC if context is not None else None
    if path is None or not path.is_file():
        return default
    given = json.loads(path.read_text()).get("serving") or {}
    return Sizing(
        workers=int(given.get("workers", default.workers)),
        cpus=float(given["cpus"]) if "cpus" in given else default.cpus,
    )
