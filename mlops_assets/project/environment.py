"""A model project's own packages: ``[environment] requirements`` in project.toml, locked with
hashes into ``requirements.lock`` beside it by ``mlops-assets lock``, and checked at every load.

The lock is resolved with the platform's own pins (uv.lock) as constraints, so a package both
need keeps the platform's version. Its header records what it was made from, so a lock that no
longer matches (requirements edited, the platform's pins moved, the body edited by hand) fails
at load naming the command that makes it again. Standard library only: the loader reads it.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlops_assets.project.package import LOCK_FILE

PLATFORM_LOCK = Path(__file__).resolve().parents[2] / "uv.lock"  # absent: the pins are not checked
_HEADER = "# mlops-assets lock: made by `mlops-assets lock` from project.toml's [environment]; do not edit"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", re.M)


def uv() -> str:
    """The uv of this environment (the platform's dev group holds it), run with ``--no-config``
    for a project's packages: the platform's own uv settings are not the project's."""
    return str(Path(sys.executable).parent / "uv")


def index_options(index: str) -> list[str]:
    """``MLOPS_PACKAGE_INDEX`` as uv takes it: a folder of wheels is then the only place packages
    come from; otherwise the index URL is."""
    if Path(index).is_dir():
        return ["--no-index", "--find-links", str(Path(index).resolve())]
    return ["--index-url", index]


# Distributions whose module is not named after them (the rest: the name with "-" as "_").
IMPORT_NAMES = {"xgboost-cpu": "xgboost", "scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL"}


def lock_imports(folder: Path) -> frozenset[str]:
    """What the project's lock lets its modules import: each locked distribution's module name."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return frozenset()
    return frozenset(IMPORT_NAMES.get(name, name.replace("-", "_")) for name in read_lock(path).pins)


class LockError(ValueError):
    """The project's lock is missing, stale or edited; the message says the command that fixes it."""


def normalized(name: str) -> str:
    """A distribution's name as indexes compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_of(requirements_text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file or lock (markers and hashes aside), by
    normalized name."""
    return {normalized(name): version for name, version in _PIN.findall(requirements_text)}


def requirements_digest(requirements: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:16]


def platform_pins(lock: Path = PLATFORM_LOCK) -> dict[str, frozenset[str]]:
    """Every package uv.lock pins, by normalized name (a few have one version per Python range);
    parsed once per version of the file (about 60 ms), not at every load of a locked project."""
    stat = lock.stat()
    return _parsed_pins(str(lock), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _parsed_pins(lock: str, _mtime_ns: int, _size: int) -> dict[str, frozenset[str]]:
    pins: dict[str, set[str]] = {}
    for package in tomllib.loads(Path(lock).read_text(encoding="utf-8")).get("package", []):
        if "version" in package:
            pins.setdefault(normalized(package["name"]), set()).add(str(package["version"]))
    return {name: frozenset(versions) for name, versions in pins.items()}


@dataclass(frozen=True)
class Lock:
    """A project's lock as written: what it was made from, and its pins."""

    requirements: str  # requirements_digest of the requirements it was made from
    body: str  # everything after the header, as uv wrote it

    @property
    def pins(self) -> dict[str, str]:
        return pins_of(self.body)

    @property
    def pinned(self) -> str:
        """Its pins as people read them: ``name==version, ...``."""
        return ", ".join(f"{name}=={version}" for name, version in sorted(self.pins.items()))

    def text(self) -> str:
        digest = hashlib.sha256(self.body.encode()).hexdigest()
        return f"{_HEADER}\n# requirements: {self.requirements}\n# body: {digest}\n{self.body}"

    @property
    def digest(self) -> str:
        """What names the environment made from it (the same lock, the same environment)."""
        return hashlib.sha256(self.body.encode()).hexdigest()[:16]


def read_lock(path: Path) -> Lock:
    """The lock in ``path``; a LockError if it is not one `mlops-assets lock` wrote, as written."""
    return parse_lock(path.read_text(encoding="utf-8"), str(path))


def parse_lock(text: str, source: str) -> Lock:
    """``text`` as a lock (a file's, or the one a registered version carries, named ``source``)."""
    lines = text.split("\n", 3)
    if len(lines) < 4 or lines[0] != _HEADER or not lines[1].startswith("# requirements: "):
        raise LockError(f"{source}: not a lock made by `mlops-assets lock` (its header is missing)")
    body = lines[3]
    if lines[2] != f"# body: {hashlib.sha256(body.encode()).hexdigest()}":
        raise LockError(f"{source}: edited since `mlops-assets lock` wrote it (its digest does not match)")
    return Lock(lines[1].removeprefix("# requirements: "), body)


def check_lock(folder: Path, requirements: tuple[str, ...], platform: Path = PLATFORM_LOCK) -> Lock | None:
    """The project's lock if it is the one its requirements and the platform's pins make now;
    None for a project without requirements; a LockError naming the fix otherwise."""
    if not requirements:
        return None
    path, command = folder / LOCK_FILE, f"MLOPS_MODEL_PROJECT={folder} .venv/bin/mlops-assets lock"
    if not path.is_file():
        raise LockError(
            f"{folder / 'project.toml'}: environment.requirements has no lock ({path}); run: {command}"
        )
    lock = read_lock(path)
    if lock.requirements != requirements_digest(requirements):
        raise LockError(
            f"{path}: made for other requirements than project.toml's environment.requirements; run: {command}"
        )
    if platform.is_file():
        pins = platform_pins(platform)
        moved = [
            f"{name}=={version} (the platform pins {' or '.join(sorted(pins[name]))})"
            for name, version in sorted(lock.pins.items())
            if name in pins and version not in pins[name]
        ]
        if moved:
            raise LockError(
                f"{path}: the platform's pins moved since it was made: {', '.join(moved)}; run: {command}"
            )
    return lock
