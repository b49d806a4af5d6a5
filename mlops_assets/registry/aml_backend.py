"""The registry on the Azure ML model registry (``MLClient.models``), same protocol as MLflow.

AML has no aliases (only its managed ``latest`` label), so an alias is a version tag
``alias.<name>`` whose value is the time of the move. Moving it writes the new holder first,
then removes the tag from the old one: a move interrupted between the two leaves two holders,
the newest of which is the alias (what the move meant), and the next move or
``repair_aliases()`` removes the stale one. The release manifest, written after registration
(it names the version), is the version tag ``release_manifest``: AML model files are immutable.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr

from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.registry.protocol import ModelVersion
from mlops_assets.registry.resource import RegistryResource

ALIAS_PREFIX = "alias."
MANIFEST_TAG = "release_manifest"
log = logging.getLogger(__name__)


class AzureMLRegistry:
    def __init__(self, ml_client: Any, model_name: str) -> None:
        self.client = ml_client
        self.model_name = model_name

    # --- reading -------------------------------------------------------------------------

    def _entities(self) -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return list(self.client.models.list(name=self.model_name))
        except ResourceNotFoundError:
            return []

    def _entity(self, version: int) -> Any:
        return self.client.models.get(name=self.model_name, version=str(version))

    @staticmethod
    def _holders(entities: list[Any], alias: str) -> list[Any]:
        """Versions carrying the alias tag, the alias itself first (newest move, then version)."""
        tag = ALIAS_PREFIX + alias
        holders = [e for e in entities if tag in (e.tags or {})]
        return sorted(holders, key=lambda e: (e.tags[tag], int(e.version)), reverse=True)

    @classmethod
    def _alias_owners(cls, entities: list[Any]) -> dict[str, str]:
        """Each alias and the version it means (its newest holder), worked out once per listing."""
        aliases = {
            k.removeprefix(ALIAS_PREFIX)
            for e in entities
            for k in (e.tags or {})
            if k.startswith(ALIAS_PREFIX)
        }
        return {alias: cls._holders(entities, alias)[0].version for alias in aliases}

    def _to_version(self, entity: Any, owners: dict[str, str]) -> ModelVersion:
        tags = dict(entity.tags or {})
        held = [alias for alias, version in owners.items() if version == entity.version]
        visible = {k: v for k, v in tags.items() if not k.startswith(ALIAS_PREFIX) and k != MANIFEST_TAG}
        return ModelVersion(
            name=entity.name,
            version=int(entity.version),
            tags=visible,
            aliases=tuple(sorted(held)),
            created=str((entity.creation_context and entity.creation_context.created_at) or ""),
        )

    def list_versions(self) -> list[ModelVersion]:
        entities = self._entities()
        owners = self._alias_owners(entities)
        return sorted((self._to_version(e, owners) for e in entities), key=lambda v: v.version)

    def get_version(self, version: int) -> ModelVersion:
        return self._to_version(self._entity(version), self._alias_owners(self._entities()))

    def find_by_fingerprint(self, fingerprint: str) -> ModelVersion | None:
        return next((v for v in self.list_versions() if v.fingerprint == fingerprint), None)

    def read_file(self, version: int, file_name: str) -> bytes:
        if file_name == MANIFEST_NAME:
            manifest = (self._entity(version).tags or {}).get(MANIFEST_TAG)
            if manifest is None:
                raise FileNotFoundError(f"{self.model_name} v{version}: no release manifest yet")
            return manifest.encode()
        with tempfile.TemporaryDirectory() as tmp:
            self.client.models.download(name=self.model_name, version=str(version), download_path=tmp)
            # AML nests downloads under <name>/<folder>/: find the file, not the layout.
            found = sorted(Path(tmp).rglob(file_name))
            if not found:
                raise FileNotFoundError(f"{self.model_name} v{version}: no file {file_name}")
            return found[0].read_bytes()

    def get_alias(self, alias: str) -> ModelVersion | None:
        entities = self._entities()
        holders = self._holders(entities, alias)
        if not holders:
            return None
        if len(holders) > 1:
            stale = ", ".join(f"v{e.version}" for e in holders[1:])
            log.warning(
                "%s: alias %s was moved to v%s but the move was interrupted: %s still tagged "
                "(the next move or repair_aliases() removes it)",
                self.model_name,
                alias,
                holders[0].version,
                stale,
            )
        return self._to_version(holders[0], self._alias_owners(entities))

    def interrupted_alias_moves(self) -> dict[str, list[int]]:
        """Alias -> the stale versions still tagged with it (empty when every move completed)."""
        entities = self._entities()
        stale = {
            a: [int(e.version) for e in self._holders(entities, a)[1:]]
            for a in sorted(self._alias_owners(entities))
        }
        return {alias: versions for alias, versions in stale.items() if versions}

    # --- writing -------------------------------------------------------------------------

    def register(
        self,
        artifact: bytes,
        artifact_name: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        existing = self.find_by_fingerprint(tags["fingerprint"])
        if existing is not None:
            return existing
        version = max((int(e.version) for e in self._entities()), default=0) + 1
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            for name, data in {artifact_name: artifact, **(files or {})}.items():
                (folder / name).write_bytes(data)
            created = self.client.models.create_or_update(
                Model(
                    name=self.model_name,
                    version=str(version),
                    path=str(folder),
                    type=AssetTypes.CUSTOM_MODEL,
                    description=f"fingerprint {tags['fingerprint']}",
                    tags=dict(tags),
                    properties={name: repr(float(value)) for name, value in metrics.items()},
                )
            )
        return self._to_version(created, self._alias_owners([created]))

    def _update_tags(self, version: int, set_tags: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        entity = self._entity(version)
        entity.tags = {k: v for k, v in (entity.tags or {}).items() if k not in remove} | set_tags
        self.client.models.create_or_update(entity)

    def write_manifest(self, version: int, manifest: dict[str, Any]) -> None:
        self._update_tags(version, {MANIFEST_TAG: json.dumps(manifest, sort_keys=True)})

    def set_tag(self, version: int, key: str, value: str) -> None:
        self._update_tags(version, {key: value})

    def set_alias(self, alias: str, version: int) -> None:
        tag = ALIAS_PREFIX + alias
        holders = self._holders(self._entities(), alias)
        newest = max((int(e.tags[tag]) for e in holders), default=0)
        # Nanoseconds, zero-padded so tags sort as numbers; never behind an earlier move's stamp.
        stamp = f"{max(time.time_ns(), newest + 1):020d}"
        self._update_tags(version, {tag: stamp})
        for stale in holders:
            if int(stale.version) != version:
                self._update_tags(int(stale.version), {}, remove=(tag,))

    def remove_alias(self, alias: str) -> None:
        for holder in self._holders(self._entities(), alias):
            self._update_tags(int(holder.version), {}, remove=(ALIAS_PREFIX + alias,))

    def repair_aliases(self) -> dict[str, list[int]]:
        """Finish interrupted alias moves; returns what was removed."""
        stale = self.interrupted_alias_moves()
        for alias, versions in stale.items():
            for version in versions:
                self._update_tags(version, {}, remove=(ALIAS_PREFIX + alias,))
        return stale


class AzureMLRegistryResource(RegistryResource):
    subscription_id: str
    resource_group: str
    workspace: str
    model_name: str = Field(
        description="Registered model name (the model project's, unless MLOPS_MODEL_NAME)."
    )
    _registry: AzureMLRegistry | None = PrivateAttr(default=None)

    @property
    def backend_name(self) -> str:
        return f"azureml:{self.workspace}"

    def ml_client(self) -> Any:
        from mlops_assets.azure.ml_client import aml_client

        return aml_client(self.subscription_id, self.resource_group, self.workspace)

    def open_registry(self) -> AzureMLRegistry:
        if self._registry is None:
            self._registry = AzureMLRegistry(self.ml_client(), self.model_name)
        return self._registry
