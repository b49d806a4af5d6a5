"""Recording stand-ins for Azure and Kubernetes control planes that cannot run here.

Each records every call with its arguments (the SDK's own request models, so tests assert on
what would be serialised and sent) and answers like the service would, from a script the test
sets. Data planes that can run here (Blob Storage: Azurite) are used for real.
"""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


@dataclass
class Recorder:
    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)

    def record(self, name: str, *args, **kwargs) -> None:
        self.calls.append((name, args, kwargs))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def last(self, name: str) -> tuple[tuple, dict]:
        for recorded, args, kwargs in reversed(self.calls):
            if recorded == name:
                return args, kwargs
        raise AssertionError(f"{name} was never called; calls: {self.names()}")


class RecordingAcrClient:
    """ContainerRegistryManagementClient's registries/runs groups, as ACR Tasks answers them."""

    def __init__(self, upload_url: str, statuses: list[str], digest: str = "sha256:" + "ab" * 32) -> None:
        from azure.mgmt.containerregistry.v2025_03_01_preview import models

        self.models = models
        self.recorder = Recorder()
        self.upload_url = upload_url
        self.statuses = list(statuses)
        self.digest = digest
        self.image: tuple[str, str] | None = None
        self.registries = SimpleNamespace(
            get_build_source_upload_url=self._upload_url, schedule_run=self._schedule_run
        )
        self.runs = SimpleNamespace(get=self._get, cancel=self._cancel, get_log_sas_url=self._log_url)

    def _upload_url(self, resource_group: str, registry: str):
        self.recorder.record("get_build_source_upload_url", resource_group, registry)
        return self.models.SourceUploadDefinition(
            upload_url=self.upload_url, relative_path="source/ctx.tar.gz"
        )

    def _run(self, status: str):
        """Deserialised from the JSON ACR answers with, as the SDK does (read-only fields included)."""
        body: dict = {"runId": "ca1", "status": status}
        if status == "Failed":
            body["runErrorMessage"] = "step 1 failed"
        if status == "Succeeded" and self.image:
            repository, tag = self.image
            body["outputImages"] = [
                {"registry": "reg.azurecr.io", "repository": repository, "tag": tag, "digest": self.digest}
            ]
        return self.models.Run.deserialize({"properties": body})

    def _schedule_run(self, resource_group: str, registry: str, request: Any):
        self.recorder.record("schedule_run", resource_group, registry, request)
        self.image = tuple(request.image_names[0].rsplit(":", 1))
        return self._run(self.statuses.pop(0))

    def _get(self, resource_group: str, registry: str, run_id: str):
        self.recorder.record("runs.get", resource_group, registry, run_id)
        return self._run(self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])

    def _cancel(self, resource_group: str, registry: str, run_id: str):
        self.recorder.record("runs.cancel", resource_group, registry, run_id)

    def _log_url(self, resource_group: str, registry: str, run_id: str):
        self.recorder.record("runs.get_log_sas_url", resource_group, registry, run_id)
        return SimpleNamespace(log_link=f"https://logs.example/{run_id}")
