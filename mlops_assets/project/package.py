"""A model project as a Python package with one stable name, wherever its code or its artifacts load.

The project's folder (or the copy a registered version carries) is mounted as the package
``model_project``: its modules import each other (``from model_project.features import ...`` or
``from .features import ...``), and a class defined in one of them pickles as
``model_project.<module>.<Class>``, a name that resolves in the trainer, the project runner, the
service, the image, ``score.py`` on Azure ML and the AML batch job alike, whatever the project's
folder is called. Standard library only: it ships with ``score.py`` and the standalone scripts.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE_NAME = "model_project"
LOCK_FILE = "requirements.lock"  # a project's own packages, locked (project/environment.py)
# Where a release puts a version's package in the code it ships: beside the packaged serving spec
# (``mlops_assets/model/``), under a name no import statement can reach by accident.
PACKAGED_DIR = "project-package"
MANIFEST_KEY = "project_package"  # a registered version's manifest: {"digest", "modules"}
# The project's own tests are not the model's code: they stay out of the package a version carries.
_NOT_PACKAGED = ("test_*.py", "*_test.py", "conftest.py")
MAX_PACKAGE_BYTES = 2 << 20  # a package is source code: anything bigger is a mistake (data, a model)


def package_files(folder: Path) -> dict[str, Path]:
    """Every module of the project under ``folder``, by its path relative to it (posix), sorted,
    and its lock if it has one (``requirements.lock``: a version carries its environment too)."""
    folder = Path(folder)
    found = {LOCK_FILE: folder / LOCK_FILE} if (folder / LOCK_FILE).is_file() else {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if "__pycache__" in relative.parts or any(part.startswith(".") for part in relative.parts):
            continue
        if any(relative.match(pattern) for pattern in _NOT_PACKAGED) or relative.parts[0] == "tests":
            continue
        found[relative.as_posix()] = path
    return dict(sorted(found.items()))


def package_sources(folder: Path) -> dict[str, str]:
    """The package's modules as text, by relative path: what a registered version keeps."""
    sources = {name: path.read_text(encoding="utf-8") for name, path in package_files(folder).items()}
    size = sum(len(text.encode()) for text in sources.values())
    if size > MAX_PACKAGE_BYTES:
        raise ValueError(
            f"{folder}: the project's modules hold {size} bytes (at most {MAX_PACKAGE_BYTES}); "
            "keep data out of *.py files"
        )
    return sources


def sources_digest(sources: dict[str, str]) -> str:
    """Every module's path and bytes: the project's code as a fingerprint sees it."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def package_digest(folder: Path) -> str:
    return sources_digest(package_sources(folder))


def write_package(sources: dict[str, str], folder: Path) -> Path:
    """``sources`` (package_sources) written out as a folder that ``mount`` takes."""
    folder = Path(folder)
    for name, text in sources.items():
        target = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"{name}: not a path inside a project package")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder


def manifest_block(sources: dict[str, str]) -> dict:
    """What a registered version's manifest keeps of its package."""
    return {"name": PACKAGE_NAME, "digest": sources_digest(sources), "modules": dict(sorted(sources.items()))}


def sources_of(manifest: dict) -> dict[str, str] | None:
    """The package a version's manifest carries, checked against its digest; None for a version
    registered before manifests carried one."""
    block = manifest.get(MANIFEST_KEY)
    if not block:
        return None
    sources = dict(block["modules"])
    if sources_digest(sources) != block["digest"]:
        raise ValueError(f"version {manifest.get('version')}: its project package does not match its digest")
    return sources


def mount(folder: Path) -> ModuleType:
    """``folder`` as the package ``model_project`` of this process (it replaces one mounted before)."""
    folder = Path(folder).resolve()
    for name in [n for n in sys.modules if n == PACKAGE_NAME or n.startswith(PACKAGE_NAME + ".")]:
        del sys.modules[name]
    init = folder / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            PACKAGE_NAME, init, submodule_search_locations=[str(folder)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(PACKAGE_NAME, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
    assert spec is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package
    if spec.loader is not None:
        spec.loader.exec_module(package)
    importlib.invalidate_caches()
    return package


def import_project_module(folder: Path, module: str) -> ModuleType:
    """``model_project.<module>`` from ``folder`` (mounted first if another folder is)."""
    mounted = sys.modules.get(PACKAGE_NAME)
    if mounted is None or list(getattr(mounted, "__path__", [])) != [str(Path(folder).resolve())]:
        mount(folder)
    return importlib.import_module(f"{PACKAGE_NAME}.{module}")
