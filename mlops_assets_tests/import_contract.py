"""The code location's layering, as a walk over every import statement in the package.

Every ``import``/``from … import`` counts, at module level or inside a function (a function-level
import hides a cycle, it does not remove it). Written here rather than with import-linter: two
rules beyond the layers (the service's rooms never load dagster or mlflow, asset keys never written
as strings) are checks on the syntax tree anyway, and the walk is forty lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "mlops_assets"

# Lowest first. A module may import its own layer and those below; the domains of one layer
# (monitoring, batch) are independent of each other. Every room is placed whole: no module of a
# room sits in another layer than its room.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mlops_assets", "mlops_assets.settings", "mlops_assets.project"),
    ("mlops_assets.model",),  # the row contract applies project's rule table
    ("mlops_assets.storage",),
    ("mlops_assets.runner",),  # project code runs only there: above the model it loads
    ("mlops_assets.hosting",),  # the service inherits its socket from the host (hosting.listener)
    ("mlops_assets.serving",),
    ("mlops_assets.core",),
    ("mlops_assets.azure",),
    ("mlops_assets.ingest",),
    ("mlops_assets.training",),
    ("mlops_assets.registry",),
    ("mlops_assets.release",),
    ("mlops_assets.monitoring", "mlops_assets.batch"),
    ("mlops_assets.resources",),
    ("mlops_assets.definitions",),
    ("mlops_assets.ops",),
)
# The independent siblings: a layer whose entries must not import each other.
INDEPENDENT = {"mlops_assets.monitoring", "mlops_assets.batch"}
# The rooms the scoring service and the local host are made of: they never pull in these, however
# lazily (start-up time and memory per worker; `deployments` and `down` run without Dagster).
SERVICE_ROOMS = ("mlops_assets", "mlops_assets.settings", "mlops_assets.project", "mlops_assets.model",
                 "mlops_assets.storage", "mlops_assets.hosting", "mlops_assets.serving",
                 "mlops_assets.runner")  # fmt: skip
NOT_IN_SERVICE = ("dagster", "mlflow")
KEYS_MODULE = "mlops_assets.core.keys"
# Rooms whose package import must cost nothing beyond the module asked for (the service imports
# storage.fsstore, hosting.listener and its own modules one by one).
EMPTY_MODULES = (
    "mlops_assets.model",
    "mlops_assets.storage",
    "mlops_assets.runner",
    "mlops_assets.hosting",
    "mlops_assets.serving",
    "mlops_assets.core",
)


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.rule}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, the entry that matched): the most specific entry over every layer."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or (module.startswith(entry + ".") and entry != PACKAGE)
            if matches and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    if best is None and module == PACKAGE:
        return 0, PACKAGE
    return best


def imported_modules(tree: ast.AST, modules: set[str]) -> list[tuple[str, int]]:
    """Every project module a tree imports: ``from pkg import mod`` names the module, not the package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if candidate in modules else node.module, node.lineno))
    return found


def string_asset_keys(tree: ast.AST) -> list[int]:
    """Lines that name an asset by a string: ``AssetKey("x")``, ``deps=["x"]``, ``asset="x"``."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "AssetKey" and any(isinstance(a, ast.Constant) for a in node.args):
            lines.append(node.lineno)
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg == "asset" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.append(node.lineno)
            elements = value.elts if isinstance(value, ast.List | ast.Tuple) else []
            if keyword.arg == "deps" and any(isinstance(e, ast.Constant) for e in elements):
                lines.append(node.lineno)
    return lines


def check_package(root: Path) -> list[Violation]:
    """Every breach of the contract in the package at ``root`` (a folder named mlops_assets)."""
    sources = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    modules = set(sources)
    violations: list[Violation] = []
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own = layer_of(module)
        if own is None:
            violations.append(Violation(module, 1, "in no layer: add it to LAYERS"))
            continue
        if module in EMPTY_MODULES and any(
            isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(tree)
        ):
            violations.append(Violation(module, 1, "must import nothing"))
        for target, line in imported_modules(tree, modules):
            if own[1] in SERVICE_ROOMS and target.split(".")[0] in NOT_IN_SERVICE:
                violations.append(Violation(module, line, f"imports {target}: the service never loads it"))
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            theirs = layer_of(target)
            if theirs is None:
                continue
            if theirs[0] > own[0]:
                violations.append(
                    Violation(
                        module, line, f"imports {target} from a higher layer ({theirs[1]} above {own[1]})"
                    )
                )
            elif theirs[0] == own[0] and {own[1], theirs[1]} <= INDEPENDENT and own[1] != theirs[1]:
                violations.append(
                    Violation(module, line, f"imports {target}: {own[1]} and {theirs[1]} are independent")
                )
        if module != KEYS_MODULE:
            violations += [
                Violation(module, line, "names an asset by a string: use mlops_assets.core.keys")
                for line in string_asset_keys(tree)
            ]
    return violations
