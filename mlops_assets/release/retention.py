"""What a home keeps of its releases on disk: build contexts and process-runtime venvs.

After each release, a version's context stays if an alias names the version, a deployment serves
it, or it is one of the newest ``keep`` registered versions; a venv stays if a kept context
installs into it (its key is the context's code part). Everything else under the home's
``release/contexts`` and ``release/venvs`` is removed. A venv still being built (no ``.complete``
yet) and a context being assembled (``.staging-*``) are never touched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.hosting.build_layout import MODEL_DIR
from mlops_assets.hosting.runtimes import venv_key
from mlops_assets.model.manifest import MANIFEST_NAME


@dataclass
class Pruned:
    contexts: list[str] = field(default_factory=list)
    venvs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_contexts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not (self.contexts or self.venvs):
            return "nothing to remove"
        return (
            f"removed {len(self.contexts)} build context(s) and {len(self.venvs)} venv(s), "
            f"{self.freed_bytes / 1e6:.1f} MB"
        )


def kept_versions(registered: list[int], named: set[str], keep: int) -> set[str]:
    """The versions an alias names or a deployment serves (``named``), and the newest ``keep``."""
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, got {keep}")
    newest = sorted(registered)[-keep:] if keep else []
    return {str(v) for v in newest} | {str(v) for v in named}


def _context_version(context: Path) -> str | None:
    try:
        return str(json.loads((context / MODEL_DIR / MANIFEST_NAME).read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def prune(contexts_dir: Path, venvs_dir: Path, kept: set[str], in_use: set[Path]) -> Pruned:
    """Remove the contexts of versions outside ``kept`` (never one in ``in_use``: a deployment's),
    then every finished venv no kept context installs into."""
    pruned = Pruned()
    kept_contexts = []
    for context in sorted(p for p in contexts_dir.glob("*") if p.is_dir()) if contexts_dir.is_dir() else []:
        if context.name.startswith("."):
            continue  # being assembled
        version = _context_version(context)
        if version is None or version in kept or context.resolve() in in_use:
            kept_contexts.append(context)
            pruned.kept_contexts.append(context.name)
            continue
        pruned.freed_bytes += _size(context)
        shutil.rmtree(context, ignore_errors=True)
        pruned.contexts.append(context.name)
    wanted = {venv_key(context) for context in kept_contexts}
    for venv in sorted(p for p in venvs_dir.glob("*") if p.is_dir()) if venvs_dir.is_dir() else []:
        if venv.name in wanted or not (venv / ".complete").exists():
            continue
        pruned.freed_bytes += _size(venv)
        shutil.rmtree(venv, ignore_errors=True)
        pruned.venvs.append(venv.name)
    return pruned
