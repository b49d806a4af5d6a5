"""A model project's own environment: the platform's ``train`` dependency group (and
``project-test``: pytest, for the project's own test) plus the project's lock (``requirements.lock``), made once per digest under ``MLOPS_HOME/environments`` with uv and
reused by every runner of the project: what runs the project's model runs there.

The platform's packages come from uv.lock as a PEP 751 file (exact URLs and hashes: uv's cache
serves them without the network once they were fetched), the project's from the lock and the
configured index, every one by hash. The platform's own package is made importable by a ``.pth``
file (the runner and train.py import it), never reinstalled. Made in a staging folder and moved
into place whole, under a file lock: a runner never starts on half an environment.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from mlops_assets.project.environment import (
    LOCK_FILE,
    PLATFORM_LOCK,
    Lock,
    index_options,
    parse_lock,
    read_lock,
    uv,
)
from mlops_assets.project.package import sources_of

PLATFORM_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the mlops_assets package


class ProjectEnvironmentError(RuntimeError):
    """uv could not make the environment (a package the index no longer has, a hash that differs)."""


def environment_digest(lock: Lock) -> str:
    """The platform's lock and the project's: the same two, the same environment."""
    platform = PLATFORM_LOCK.read_bytes() if PLATFORM_LOCK.is_file() else b""
    return hashlib.sha256(platform + b"\0" + lock.body.encode()).hexdigest()[:16]


def environment_python(lock: Lock, root: Path, index: str) -> Path:
    """The interpreter of the project's environment for ``lock``, made now if it is not there yet."""
    folder = root / environment_digest(lock)
    python = folder / "bin" / "python"
    if python.exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{folder.name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process making the same one: wait for it
        if not python.exists():
            _make(folder, lock, index)
    return python


def _make(folder: Path, lock: Lock, index: str) -> None:
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    run = {"check": True, "capture_output": True, "text": True}
    try:
        subprocess.run(
            [uv(), "venv", "--no-config", "-q", "--python", sys.executable, str(staging / "venv")], **run
        )
        python = str(staging / "venv" / "bin" / "python")
        platform = staging / "pylock.train.toml"
        subprocess.run(
            [
                uv(),
                "export",
                "-q",
                "--format",
                "pylock.toml",
                "--only-group",
                "train",
                "--only-group",
                "project-test",  # pytest: the project's own test runs here (`project --test`)
                "--frozen",
                "--no-emit-project",
                "-o",
                str(platform),
            ],
            cwd=PLATFORM_LOCK.parent,
            **run,
        )
        install = [uv(), "pip", "install", "--no-config", "-q", "--python", python]
        subprocess.run([*install, "-r", str(platform)], **run)
        project = staging / "requirements.txt"
        project.write_text(lock.body)
        subprocess.run([*install, "--require-hashes", "-r", str(project), *index_options(index)], **run)
        (site_packages(python) / "mlops_assets_platform.pth").write_text(f"{PLATFORM_ROOT}\n")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        said = " ".join(line.strip() for line in (exc.stderr or "").splitlines() if line.strip())
        raise ProjectEnvironmentError(
            f"{folder}: the project's environment could not be made ({' '.join(exc.cmd[1:3])}): {said}"
        ) from None
    (staging / "venv").rename(folder)
    shutil.rmtree(staging, ignore_errors=True)


def site_packages(python: str | Path) -> Path:
    """Where the environment of ``python`` installs pure-Python packages (its ``purelib``)."""
    found = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(found.stdout.strip())


def project_python(project, root: Path, index: str, default: str = sys.executable) -> str:
    """The interpreter that runs ``project``'s code: its own environment's if it declares
    requirements (its lock was checked current when it loaded), else ``default``."""
    if not project.spec.environment.requirements:
        return default
    return str(environment_python(read_lock(project.folder / LOCK_FILE), root, index))


def version_python(manifest: dict | None, root: Path, index: str, default: str = sys.executable) -> str:
    """The interpreter that loads a registered version: the environment of the lock its package
    carries (the one it was trained in), else ``default``."""
    sources = sources_of(manifest) if manifest else None
    if not sources or LOCK_FILE not in sources:
        return default
    lock = parse_lock(sources[LOCK_FILE], f"version {manifest.get('version')}'s {LOCK_FILE}")
    return str(environment_python(lock, root, index))
