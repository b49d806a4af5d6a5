"""The model registry as the assets see it; MLflow and Azure ML implement it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Lifecycle aliases: registered -> qa (QA smoke test passed) -> production (the champion).
QA_ALIAS = "qa"
PRODUCTION_ALIAS = "production"

# The release pipeline records how far a version got; only these are "still being released".
RELEASE_STATE_TAG = "release_state"
IN_RELEASE_STATES = frozenset({"registered", "qa"})


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created: str = ""

    @property
    def fingerprint(self) -> str | None:
        return self.tags.get("fingerprint")

    @property
    def release_state(self) -> str:
        return self.tags.get(RELEASE_STATE_TAG, "registered")


class ModelRegistry(Protocol):
    model_name: str

    def list_versions(self) -> list[ModelVersion]: ...

    def get_version(self, version: int) -> ModelVersion: ...

    def find_by_fingerprint(self, fingerprint: str) -> ModelVersion | None: ...

    def register(
        self,
        artifact: bytes,
        artifact_name: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        """A new version for ``tags['fingerprint']`` (with ``files``, by name, beside the artifact:
        its compiled graph), or the version that already has it, as it was registered."""
        ...

    def write_manifest(self, version: int, manifest: dict[str, Any]) -> None: ...

    def read_file(self, version: int, file_name: str) -> bytes: ...

    def get_alias(self, alias: str) -> ModelVersion | None: ...

    def set_alias(self, alias: str, version: int) -> None: ...

    def remove_alias(self, alias: str) -> None:
        """No version holds ``alias`` any more (nothing to do when none did)."""
        ...

    def set_tag(self, version: int, key: str, value: str) -> None: ...
