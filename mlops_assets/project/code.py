"""A project's own Python (model.py, seed.py): its imports checked before it runs, then loaded.

Standard library only: the standalone trainer ships it to Azure ML beside itself.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

SPEC_FILE = "project.toml"
MODEL_FILE = "model.py"
SEED_FILE = "seed.py"
# One locked environment serves every project in this version, so a project may use only what it
# is sure to find there; __future__ and typing change no behaviour.
ALLOWED_IMPORTS = frozenset({"sklearn", "numpy", "scipy", "pandas", "__future__", "typing"})


class ProjectCodeError(ValueError):
    """Project code that may not or cannot be loaded; the message names the file and the line."""


def forbidden_imports(path: Path) -> list[str]:
    """Each import of ``path`` outside ALLOWED_IMPORTS, as ``file:line: ...`` (relative ones too)."""
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
            if name.startswith(".") or name.split(".")[0] not in ALLOWED_IMPORTS:
                problems.append(
                    f"{path}:{node.lineno}: imports {name!r}; a model project may import only "
                    f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__', 'typing'}))}"
                )
    return problems


def check_source(path: Path, function: str) -> None:
    """``path`` read without running it: only allowed imports, and a top-level ``def function``."""
    problems = forbidden_imports(path)
    if problems:
        raise ProjectCodeError("; ".join(problems))
    tree = ast.parse(path.read_bytes(), filename=str(path))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if function not in defined:
        raise ProjectCodeError(f"{path}: defines no function {function}()")


def load_module(path: Path, name: str) -> ModuleType:
    """``path`` checked, then executed as a module called ``name``."""
    problems = forbidden_imports(path)
    if problems:
        raise ProjectCodeError("; ".join(problems))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_function(module: ModuleType, path: Path, name: str) -> None:
    if not callable(getattr(module, name, None)):
        raise ProjectCodeError(f"{path}: defines no function {name}()")


def file_digest(*paths: Path) -> str:
    """The files' bytes, in the order given: what a fingerprint must change with."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
