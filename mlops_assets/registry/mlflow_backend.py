"""The registry on MLflow: a SQLite store locally, any MLflow tracking server by URI."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr

from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.registry.protocol import ModelVersion
from mlops_assets.registry.resource import RegistryResource

EXPERIMENT = "mlops-assets-registrations"
ARTIFACT_DIR = "model"


class MlflowRegistry:
    def __init__(self, tracking_uri: str, artifact_root: str, model_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.model_name = model_name

    @cached_property
    def client(self):
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        from mlflow.tracking import MlflowClient  # ~3 s import: only when the registry is used

        # Schema creation on a new SQLite store is routine, not news for the user.
        for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _to_version(self, mv) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=int(mv.version),
            tags=dict(mv.tags),
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
            created=str(mv.creation_timestamp),
        )

    def _registered_model_exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
            return True
        except MlflowException:
            return False

    def list_versions(self) -> list[ModelVersion]:
        if not self._registered_model_exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        # search_model_versions leaves aliases empty; the registered model has them all.
        held: dict[int, list[str]] = {}
        for alias, version in self.client.get_registered_model(self.model_name).aliases.items():
            held.setdefault(int(version), []).append(alias)
        versions = (self._to_version(mv) for mv in found)
        return sorted(
            (replace(v, aliases=tuple(sorted(held.get(v.version, [])))) for v in versions),
            key=lambda v: v.version,
        )

    def get_version(self, version: int) -> ModelVersion:
        return self._to_version(self.client.get_model_version(self.model_name, str(version)))

    def find_by_fingerprint(self, fingerprint: str) -> ModelVersion | None:
        return next((v for v in self.list_versions() if v.fingerprint == fingerprint), None)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(
            EXPERIMENT, artifact_location=f"{self.artifact_root}/{EXPERIMENT}"
        )

    def register(
        self,
        artifact: bytes,
        artifact_name: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        files: dict[str, bytes] | None = None,
    ) -> ModelVersion:
        existing = self.find_by_fingerprint(tags["fingerprint"])
        if existing is not None:
            return existing
        if not self._registered_model_exists():
            self.client.create_registered_model(self.model_name)
        run = self.client.create_run(
            self._experiment_id(), run_name=f"register-{tags['fingerprint']}", tags=tags
        )
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in {artifact_name: artifact, **(files or {})}.items():
                path = Path(tmp) / name
                path.write_bytes(data)
                self.client.log_artifact(run.info.run_id, str(path), ARTIFACT_DIR)
        for name, value in metrics.items():
            self.client.log_metric(run.info.run_id, name, value)
        self.client.set_terminated(run.info.run_id)
        created = self.client.create_model_version(
            self.model_name,
            source=f"{run.info.artifact_uri}/{ARTIFACT_DIR}",
            run_id=run.info.run_id,
            tags=tags,
        )
        return self._to_version(created)

    def _run_id(self, version: int) -> str:
        return self.client.get_model_version(self.model_name, str(version)).run_id

    def write_manifest(self, version: int, manifest: dict[str, Any]) -> None:
        import json

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MANIFEST_NAME
            path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            self.client.log_artifact(self._run_id(version), str(path), ARTIFACT_DIR)

    def read_file(self, version: int, file_name: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(self._run_id(version), f"{ARTIFACT_DIR}/{file_name}", tmp)
            return Path(local).read_bytes()

    def get_alias(self, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._to_version(self.client.get_model_version_by_alias(self.model_name, alias))
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def remove_alias(self, alias: str) -> None:
        if self.get_alias(alias) is not None:
            self.client.delete_registered_model_alias(self.model_name, alias)

    def set_tag(self, version: int, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.model_name, str(version), key, value)


class MlflowRegistryResource(RegistryResource):
    tracking_uri: str
    artifact_root: str
    model_name: str = Field(
        description="Registered model name (the model project's, unless MLOPS_MODEL_NAME)."
    )
    _registry: MlflowRegistry | None = PrivateAttr(default=None)

    @property
    def backend_name(self) -> str:
        return "mlflow"

    def open_registry(self) -> MlflowRegistry:
        if self._registry is None:
            self._registry = MlflowRegistry(self.tracking_uri, self.artifact_root, self.model_name)
        return self._registry
