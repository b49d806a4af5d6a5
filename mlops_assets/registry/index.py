"""The registered versions at a glance, kept in storage so `mlops-assets versions` answers without
opening the registry (MLflow alone takes seconds to import; AML is a network round trip each call).

Kept current by the steps that change what it shows: every registry write made through
``IndexedRegistry`` (registration, release states, aliases) and the evaluation (each version's
metric on the current holdout). ``rebuild`` writes it again from the registry itself.
No Dagster here: the CLI reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_assets.registry.compiled import verdict_words, version_verdict
from mlops_assets.registry.protocol import PRODUCTION_ALIAS, QA_ALIAS, ModelRegistry, ModelVersion
from mlops_assets.storage.fsstore import Storage

INDEX_DIR = "registry-index"
ALIASES = (PRODUCTION_ALIAS, QA_ALIAS)


def rounded(value: float | str | None) -> str:
    return "?" if value in (None, "") else f"{float(value):.4g}"


@dataclass(frozen=True)
class IndexedVersion:
    version: int
    tags: dict[str, str]
    aliases: tuple[str, ...]
    current: float | None  # the primary metric on the current holdout, when an evaluation measured it

    @property
    def primary_metric(self) -> str:
        return self.tags.get("primary_metric", "")

    def line(self, model_name: str, current_holdout: str) -> str:
        marks = f" [{', '.join(self.aliases)}]" if self.aliases else ""
        metric = self.primary_metric
        judged = (
            f"{metric} {rounded(self.tags.get(metric))} on holdout {self.tags.get('holdout_hash', '?')[:8]}"
        )
        if self.current is not None:
            now = f", {rounded(self.current)} on the current {current_holdout[:8]}"
        else:  # not scored since; if it was judged on the current holdout, that is its figure there
            now = " (the current one)" if self.tags.get("holdout_hash") == current_holdout else ""
        state = self.tags.get("release_state", "registered")
        compiled = verdict_words(version_verdict(self.tags))
        return f"{model_name} v{self.version}{marks}: {judged}{now}; {state}; {compiled}"


class VersionIndex:
    def __init__(self, storage: Storage, model_name: str) -> None:
        self.storage = storage
        self.model_name = model_name
        self.root = f"{INDEX_DIR}/{model_name}"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def record_version(self, version: ModelVersion) -> None:
        self.storage.write_json(self._path(f"versions/{version.version:08d}.json"), {"tags": version.tags})

    def record_aliases(self, registry: ModelRegistry) -> None:
        holders = {alias: registry.get_alias(alias) for alias in ALIASES}
        self.storage.write_json(
            self._path("aliases.json"), {a: v.version for a, v in holders.items() if v is not None}
        )

    def record_evaluation(self, holdout_hash: str, metric: str, scores: dict[int, float]) -> None:
        """Versions' ``metric`` on the holdout ``holdout_hash``; kept with earlier ones on the same holdout."""
        path = self._path("current-holdout.json")
        known = self.storage.read_json(path) if self.storage.exists(path) else {}
        same = known.get("holdout_hash") == holdout_hash and known.get("metric") == metric
        merged = (known.get("scores", {}) if same else {}) | {str(v): float(s) for v, s in scores.items()}
        self.storage.write_json(path, {"holdout_hash": holdout_hash, "metric": metric, "scores": merged})

    def rebuild(self, registry: ModelRegistry) -> int:
        versions = registry.list_versions()
        for version in versions:
            self.record_version(version)
        self.record_aliases(registry)
        return len(versions)

    def _read(self, name: str, default: Any) -> Any:
        path = self._path(name)
        return self.storage.read_json(path) if self.storage.exists(path) else default

    def read(self) -> tuple[list[IndexedVersion], str]:
        """The indexed versions, oldest first, and the hash of the current holdout ("" if none yet)."""
        aliases = self._read("aliases.json", {})
        evaluation = self._read("current-holdout.json", {})
        scores = evaluation.get("scores", {})
        found = []
        for file in self.storage.list_files(self._path("versions"), versions=False):
            number = int(file.name.removesuffix(".json"))
            tags = self.storage.read_json(file.path)["tags"]
            current = (
                scores.get(str(number)) if evaluation.get("metric") == tags.get("primary_metric") else None
            )
            held = tuple(a for a in ALIASES if aliases.get(a) == number)
            found.append(IndexedVersion(number, tags, held, current))
        return sorted(found, key=lambda v: v.version), evaluation.get("holdout_hash", "")


class LostVersionsError(RuntimeError):
    """The registry has lost versions its index records: registering now would reuse a number."""


class IndexedRegistry:
    """A ModelRegistry that records each of its changes in a VersionIndex; reads pass straight through."""

    def __init__(self, registry: ModelRegistry, index: VersionIndex) -> None:
        self._registry = registry
        self.index = index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def register(
        self,
        artifact: bytes,
        artifact_name: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        """Register, unless the registry has lost versions the index records: its next number
        would then name another artifact than the one that number already named (in the index,
        in scoring logs, in deployments), so nothing is registered until that is resolved."""
        registered = self._registry.list_versions()
        known = {v.version for v in registered}
        fingerprint = tags.get("fingerprint", "")
        if not any(v.tags.get("fingerprint") == fingerprint for v in registered):  # else: no new number
            lost = [v for v in self.index.read()[0] if v.version not in known]
            if lost:
                raise LostVersionsError(
                    f"the registry of {self.index.model_name} no longer has version(s) "
                    f"{', '.join(str(v.version) for v in lost)}, which {self.index.root}/ in storage "
                    f"records: it would number this model {max(known, default=0) + 1} again, a number "
                    "another artifact had. Nothing was registered. Restore the registry's database "
                    "(or its records), or register under a new model name (MLOPS_MODEL_NAME)"
                )
        version = self._registry.register(artifact, artifact_name, tags, metrics, files)
        self.index.record_version(version)
        return version

    def set_tag(self, version: int, key: str, value: str) -> None:
        self._registry.set_tag(version, key, value)
        self.index.record_version(self._registry.get_version(version))

    def set_alias(self, alias: str, version: int) -> None:
        self._registry.set_alias(alias, version)
        self.index.record_aliases(self._registry)

    def remove_alias(self, alias: str) -> None:
        self._registry.remove_alias(alias)
        self.index.record_aliases(self._registry)
