"""A project's own Python (model.py, seed.py, its other modules): imports checked, then loaded.

The check is hygiene, not a sandbox: it catches a third-party package the project's environment
does not hold before a run fails on it. What keeps project code away from the orchestrator's
secrets is where it runs (the project runner's process), never this check. Standard library only:
the standalone trainer ships it to Azure ML beside itself.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path
from types import ModuleType

from mlops_assets.project.environment import lock_imports
from mlops_assets.project.package import PACKAGE_NAME, import_project_module, package_files

SPEC_FILE = "project.toml"
MODEL_FILE = "model.py"
SEED_FILE = "seed.py"
# One locked environment serves every project in this version, so beyond the standard library and
# its own modules a project may use only what it is sure to find there.
ALLOWED_IMPORTS = frozenset({"sklearn", "numpy", "scipy", "pandas"})


class ProjectCodeError(ValueError):
    """Project code that may not or cannot be loaded; the message names the file and the line."""


def _importable(name: str, locked: frozenset[str]) -> bool:
    top = name.split(".")[0]
    return (
        name.startswith(".")
        or top in ALLOWED_IMPORTS
        or top in locked
        or top == PACKAGE_NAME
        or top in sys.stdlib_module_names
    )


def forbidden_imports(path: Path, locked: frozenset[str] = frozenset()) -> list[str]:
    """Each import of ``path`` of a third-party package outside ALLOWED_IMPORTS and the modules of
    what the project's lock holds (``locked``), as ``file:line: ...`` (the standard library, the
    project's own modules and relative imports are allowed)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno}: not valid Python ({exc.msg})"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            if not _importable(name, locked):
                allowed = ", ".join(sorted(ALLOWED_IMPORTS | locked))
                problems.append(
                    f"{path}:{node.lineno}: imports {name!r}; beyond the standard library and its own "
                    f"modules ({PACKAGE_NAME}.*) a model project may import only {allowed}, and what "
                    "its [environment] requirements in project.toml lock (add the package there, then "
                    "run mlops-assets lock)"
                )
    return problems


def check_package(folder: Path) -> None:
    """Every module of the project in ``folder`` read without running it: valid Python, allowed
    imports only; a ProjectCodeError naming each file and line otherwise."""
    locked = lock_imports(folder)
    modules = [path for path in package_files(folder).values() if path.suffix == ".py"]
    problems = [p for path in modules for p in forbidden_imports(path, locked)]
    if problems:
        raise ProjectCodeError("; ".join(problems))


def require_defined(path: Path, *functions: str) -> None:
    """A top-level ``def`` of one of ``functions`` in ``path`` (checked by ``check_package``), read
    without running it."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if not defined & set(functions):
        raise ProjectCodeError(f"{path}: defines no function {' or '.join(f + '()' for f in functions)}")


def load_module(folder: Path, file: str) -> ModuleType:
    """``folder/file`` (model.py, seed.py) as ``model_project.<stem>``, the package's every module
    checked first."""
    check_package(folder)
    return import_project_module(folder, Path(file).stem)


def require_function(module: ModuleType, path: Path, name: str) -> None:
    if not callable(getattr(module, name, None)):
        raise ProjectCodeError(f"{path}: defines no function {name}()")


def file_digest(*paths: Path) -> str:
    """The files' bytes, in the order given: what a fingerprint must change with."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
