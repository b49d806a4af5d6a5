"""`mlops-assets lock`: a model project's ``[environment] requirements`` resolved, with the
platform's own pins (uv.lock) as constraints, into ``requirements.lock`` beside project.toml:
every package pinned and hashed, the shared ones at the platform's versions. Nothing of the
platform's environment changes; a requirement that does not resolve leaves the old lock as it was.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from mlops_assets.project.environment import (
    LOCK_FILE,
    PLATFORM_LOCK,
    Lock,
    LockError,
    index_options,
    requirements_digest,
    uv,
)


def platform_constraints(scratch: Path) -> Path:
    """The platform's pins as a constraints file (every group: whatever a project shares with the
    platform keeps the platform's version)."""
    exported = subprocess.run(
        [
            uv(),
            "export",
            "--frozen",
            "--all-groups",
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "-q",
        ],
        cwd=PLATFORM_LOCK.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = scratch / "platform-constraints.txt"
    path.write_text(exported)
    return path


def lock_project(folder: Path, requirements: tuple[str, ...], index: str) -> Lock:
    """Resolve and write the project's lock; a LockError naming the file, the requirements and uv's
    reason if they do not resolve (the previous lock, if any, stays)."""
    spec_file = folder / "project.toml"
    if not requirements:
        raise LockError(f"{spec_file}: no [environment] requirements to lock")
    with tempfile.TemporaryDirectory(prefix="mlops-lock-") as scratch:
        wanted = Path(scratch) / "requirements.in"
        wanted.write_text("\n".join(requirements) + "\n")
        compiled = subprocess.run(
            [
                uv(), "pip", "compile", "--no-config", "-q", str(wanted),
                "--constraint", str(platform_constraints(Path(scratch))),
                "--generate-hashes", "--no-header", "--no-annotate",
                "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
                *index_options(index),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
    if compiled.returncode != 0:
        reason = " ".join(line.strip() for line in compiled.stderr.splitlines() if line.strip())
        raise LockError(
            f"{spec_file}: environment.requirements {list(requirements)} do not resolve on {index} with the "
            f"platform's pins (its own packages keep their versions): {reason}; change the requirement in "
            f"{spec_file} and run mlops-assets lock again"
        )
    lock = Lock(requirements_digest(requirements), compiled.stdout)
    staging = folder / f".{LOCK_FILE}.partial"
    staging.write_text(lock.text())
    staging.replace(folder / LOCK_FILE)
    return lock
