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

    def __init__(
        self,
        upload_url: str,
        statuses: list[str],
        digest: str = "sha256:" + "ab" * 32,
        log_url: str = "",
        error_message: str = "step 1 failed",
    ) -> None:
        from azure.mgmt.containerregistry.v2025_03_01_preview import models

        self.models = models
        self.recorder = Recorder()
        self.upload_url = upload_url
        self.log_url = log_url  # ACR hands out a read SAS to the run's log blob
        self.error_message = error_message
        self.statuses = list(statuses)
        self.digest = digest
        self.image: tuple[str, str] | None = None
        self.registries = SimpleNamespace(
            get_build_source_upload_url=self._upload_url, schedule_run=self._schedule_run
        )
        self.runs = SimpleNamespace(get=self._get, cancel=self._cancel, get_log_sas_url=self._log_url)
        self.pushed: dict[tuple[str, str], str] = {}  # what a succeeded run pushed: (repo, tag) -> digest
        # The registry's data plane (azure-containerregistry's ContainerRegistryClient).
        self.data_plane = SimpleNamespace(get_manifest_properties=self._manifest)

    def _manifest(self, repository: str, tag: str):
        from azure.core.exceptions import ResourceNotFoundError

        self.recorder.record("get_manifest_properties", repository, tag)
        if (repository, tag) not in self.pushed:
            raise ResourceNotFoundError(f"manifest unknown: {repository}:{tag}")
        return SimpleNamespace(digest=self.pushed[(repository, tag)])

    def _upload_url(self, resource_group: str, registry: str):
        self.recorder.record("get_build_source_upload_url", resource_group, registry)
        return self.models.SourceUploadDefinition(
            upload_url=self.upload_url, relative_path="source/ctx.tar.gz"
        )

    def _run(self, status: str):
        """Deserialised from the JSON ACR answers with, as the SDK does (read-only fields included)."""
        body: dict = {"runId": "ca1", "status": status}
        if status == "Failed":
            body["runErrorMessage"] = self.error_message
        if status == "Succeeded" and self.image:
            repository, tag = self.image
            self.pushed[(repository, tag)] = self.digest
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
        assert self.log_url, "a failed run's log link: give RecordingAcrClient a log_url"
        return SimpleNamespace(log_link=self.log_url)


class ContainerRuntime:
    """Runs "images" as real scoring services on 127.0.0.1, so smoke tests against the cloud
    targets hit a real service: an image tag ``sha256-<16>`` names the build context it came from,
    and the container's environment (keys included) is what the control plane was sent."""

    def __init__(self, home, contexts_dir) -> None:
        self.home, self.contexts_dir = home, contexts_dir
        self.services: dict = {}

    def run(self, name: str, image: str, env: dict[str, str], port: int) -> None:
        from mlops_assets_tests.serving_support import Service

        self.stop(name)
        tag = image.rsplit(":", 1)[1]
        model_dir = self.contexts_dir / tag.removeprefix("sha256-") / "model"
        self.services[name] = Service(self.home / name, model_dir, env=env, port=port)

    def ready_version(self, name: str) -> str | None:
        import httpx

        service = self.services.get(name)
        if service is None or service.process.poll() is not None:
            return None
        try:
            answer = httpx.get(f"{service.url}/health/ready", timeout=1)
        except httpx.HTTPError:
            return None
        return answer.json().get("version") if answer.status_code == 200 else None

    def stop(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.stop()

    def stop_all(self) -> None:
        for name in list(self.services):
            self.stop(name)


class RecordingAciClient:
    """ContainerInstanceManagementClient.container_groups: records each group, runs its container."""

    def __init__(self, runtime: ContainerRuntime, fail: bool = False) -> None:
        self.recorder = Recorder()
        self.runtime = runtime
        self.fail = fail
        self.groups: dict[str, Any] = {}
        self.container_groups = SimpleNamespace(
            begin_create_or_update=self._create, get=self._get, begin_delete=self._delete
        )

    def _create(self, resource_group: str, name: str, group: Any):
        self.recorder.record("begin_create_or_update", resource_group, name, group)
        self.groups[name] = group
        (container,) = group.containers
        env = {v.name: v.secure_value or v.value for v in container.environment_variables}
        if not self.fail:
            port = int(container.command[container.command.index("--port") + 1])
            self.runtime.run(name, container.image, env, port)
        return SimpleNamespace(result=lambda: group)

    def _get(self, resource_group: str, name: str):
        from azure.mgmt.containerinstance import models

        self.recorder.record("get", resource_group, name)
        sent = self.groups[name]
        running = self.runtime.ready_version(name) is not None
        state = "Running" if running else "Waiting"
        return models.ContainerGroup.deserialize(
            {
                "location": sent.location,
                "properties": {
                    "provisioningState": "Failed" if self.fail else ("Succeeded" if running else "Creating"),
                    "containers": [
                        {
                            "name": c.name,
                            "properties": {
                                "image": c.image,
                                "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}},
                                "instanceView": {
                                    "currentState": {"state": state},
                                    "events": [{"message": "Failed to pull image"}] if self.fail else [],
                                },
                            },
                        }
                        for c in sent.containers
                    ],
                    "osType": "Linux",
                    "ipAddress": {
                        "type": "Public",
                        "ports": [{"port": p.port} for p in sent.ip_address.ports],
                        "fqdn": "127.0.0.1",  # where the runtime serves this group
                    },
                },
            }
        )

    def _delete(self, resource_group: str, name: str):
        self.recorder.record("begin_delete", resource_group, name)
        self.groups.pop(name, None)
        self.runtime.stop(name)
        return SimpleNamespace(result=lambda: None)


# method suffix -> (kind, API group), as the kubernetes client names them
KUBERNETES_KINDS = {
    "secret": ("Secret", "core"),
    "service_account": ("ServiceAccount", "core"),
    "service": ("Service", "core"),
    "deployment": ("Deployment", "apps"),
    "horizontal_pod_autoscaler": ("HorizontalPodAutoscaler", "autoscaling"),
    "pod_disruption_budget": ("PodDisruptionBudget", "policy"),
}


class RecordingKubernetes:
    """The CoreV1/AppsV1/AutoscalingV2/PolicyV1 calls the AKS target makes, against an in-memory
    API server whose Deployment pods are the runtime's services (one, on ``port``). An image in
    ``broken_images`` never becomes ready, like a pod in CrashLoopBackOff."""

    def __init__(self, runtime: ContainerRuntime, port: int, broken_images: set[str] | None = None) -> None:
        self.recorder = Recorder()
        self.runtime, self.port = runtime, port
        self.broken_images = broken_images or set()
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.generation = 0
        groups: dict[str, dict] = {"core": {}, "apps": {}, "autoscaling": {}, "policy": {}}
        for suffix, (kind, group) in KUBERNETES_KINDS.items():
            groups[group][f"read_namespaced_{suffix}"] = self._reader(kind)
            groups[group][f"create_namespaced_{suffix}"] = self._creator(kind)
            groups[group][f"patch_namespaced_{suffix}"] = self._patcher(kind)
        groups["apps"]["read_namespaced_deployment_status"] = self._status
        groups["apps"]["delete_namespaced_deployment"] = self._delete_deployment
        self.core, self.apps = SimpleNamespace(**groups["core"]), SimpleNamespace(**groups["apps"])
        self.autoscaling, self.policy = (
            SimpleNamespace(**groups["autoscaling"]),
            SimpleNamespace(**groups["policy"]),
        )

    def _reader(self, kind: str):
        def read(name: str, namespace: str):
            from kubernetes.client.exceptions import ApiException

            self.recorder.record(f"read {kind}", name, namespace)
            if (kind, namespace, name) not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            return self.objects[(kind, namespace, name)]

        return read

    def _store(self, kind: str, namespace: str, body: dict) -> None:
        key = (kind, namespace, body["metadata"]["name"])
        before = self.objects.get(key)
        self.objects[key] = body
        # As the API server does: only a changed pod template starts a rollout.
        if kind == "Deployment" and (
            before is None or before["spec"]["template"] != body["spec"]["template"]
        ):
            self.generation += 1
            self._roll(namespace, body)

    def _creator(self, kind: str):
        def create(namespace: str, body: dict):
            self.recorder.record(f"create {kind}", namespace, body)
            self._store(kind, namespace, body)
            return body

        return create

    def _patcher(self, kind: str):
        def patch(name: str, namespace: str, body: dict):
            self.recorder.record(f"patch {kind}", name, namespace, body)
            self._store(kind, namespace, body)
            return body

        return patch

    def _roll(self, namespace: str, deployment: dict) -> None:
        import base64

        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {}
        for variable in container["env"]:
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secret = self.objects.get(("Secret", namespace, ref["name"]))
                if secret is None and ref.get("optional"):
                    continue  # as the kubelet does: an optional secret that is missing sets nothing
                env[variable["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif "value" in variable:
                env[variable["name"]] = variable["value"]
        if container["image"] in self.broken_images:
            self.runtime.stop("aks")
        else:
            self.runtime.run("aks", container["image"], env, self.port)

    def _status(self, name: str, namespace: str):
        self.recorder.record("read Deployment status", name, namespace)
        deployment = self.objects[("Deployment", namespace, name)]
        wanted = deployment["spec"]["replicas"]
        version = deployment["spec"]["template"]["metadata"]["annotations"]["mlops-assets/model-version"]
        ready = self.runtime.ready_version("aks") == version
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        conditions = []
        if image in self.broken_images:  # what the controller reports once progressDeadlineSeconds pass
            conditions = [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "scoring-{self.generation}" has timed out progressing.',
                }
            ]
        return {
            "metadata": {"generation": self.generation},
            "spec": {"replicas": wanted},
            "status": {
                "observed_generation": self.generation,
                "replicas": wanted + (0 if ready else 1),  # the surge pod while it rolls
                "updated_replicas": wanted if ready else 1,
                "available_replicas": wanted if ready else wanted - 1,
                "conditions": conditions,
            },
        }

    def _delete_deployment(self, name: str, namespace: str):
        self.recorder.record("delete Deployment", name, namespace)
        self.objects.pop(("Deployment", namespace, name), None)
        self.runtime.stop("aks")


class LocalAmlWorkspace:
    """An ``MLClient`` as AML answers it: command jobs run as local subprocesses, models kept on disk.

    ``create_or_update(job)`` records the job entity exactly as the SDK serialises it, "uploads"
    its code folder, and runs its command line with the job's environment variables plus
    ``job_secrets`` -- what a real cluster gets from its managed identity, handed to the process
    only, never to the entity. ``behaviour``: ``run`` (status follows the process), ``canceled``
    (someone cancels it in the studio once it runs), ``hang`` (``NotResponding`` until cancelled).
    """

    def __init__(
        self, workdir, job_secrets: dict[str, str], behaviour: str = "run", on_completed=None
    ) -> None:
        self.on_completed = on_completed  # called once, when a job is first seen Completed
        self.recorder = Recorder()
        self.workdir = workdir
        self.job_secrets = job_secrets
        self.behaviour = behaviour
        self.processes: dict[str, Any] = {}
        self.cancelled: set[str] = set()
        self.jobs = SimpleNamespace(get=self._get_job, begin_cancel=self._cancel)
        self.models = RecordingAmlModels(workdir / "models", self.recorder)
        self.environments = RecordingAmlEnvironments(self.recorder)

    def create_or_update(self, job):
        import os
        import shlex
        import shutil
        import subprocess
        import sys

        self.recorder.record(
            "jobs.create_or_update", job._to_dict(), job_name=job.name, experiment=job.experiment_name
        )
        folder = self.workdir / job.name
        shutil.copytree(job.code, folder / "code")
        argv = shlex.split(job.command)
        if argv[0] == "python":
            argv[0] = sys.executable  # the environment's interpreter: this venv has train.yml's pins
        env = {"PATH": os.environ["PATH"], **job.environment_variables, **self.job_secrets}
        if self.behaviour != "hang":
            with open(folder / "std_log.txt", "wb") as log:
                self.processes[job.name] = subprocess.Popen(
                    argv, cwd=folder / "code", env=env, stdout=log, stderr=subprocess.STDOUT
                )
        return SimpleNamespace(name=job.name, status="Starting")

    def _get_job(self, name: str):
        if name in self.cancelled:
            return SimpleNamespace(name=name, status="Canceled")
        if self.behaviour == "hang":
            return SimpleNamespace(name=name, status="NotResponding")
        process = self.processes[name]
        if process.poll() is None:
            if self.behaviour == "canceled":
                self._stop(name)
                self.cancelled.add(name)
                return SimpleNamespace(name=name, status="Canceled")
            return SimpleNamespace(name=name, status="Running")
        if process.returncode == 0 and self.on_completed is not None:
            hook, self.on_completed = self.on_completed, None
            hook()
        return SimpleNamespace(name=name, status="Completed" if process.returncode == 0 else "Failed")

    def _cancel(self, name: str):
        self.recorder.record("jobs.begin_cancel", name)
        self._stop(name)
        self.cancelled.add(name)
        return SimpleNamespace(result=lambda: None)

    def _stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def log(self, name: str) -> str:
        return (self.workdir / name / "std_log.txt").read_text()


class RecordingAmlEnvironments:
    """``MLClient.environments``: versions kept as AML keeps them (an entity per name and version;
    ``get`` of one never created raises ResourceNotFoundError, as the service answers)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.stored: dict[tuple[str, str], Any] = {}

    def get(self, name: str, version: str):
        from azure.core.exceptions import ResourceNotFoundError

        self.recorder.record("environments.get", name, version=version)
        if (name, version) not in self.stored:
            raise ResourceNotFoundError(f"Environment {name}:{version} not found")
        return self.stored[(name, version)]

    def create_or_update(self, environment):
        self.recorder.record("environments.create_or_update", environment._to_dict())
        self.stored[(environment.name, environment.version)] = environment
        return environment


class RecordingAmlModels:
    """``MLClient.models``: versions kept as entities plus their uploaded folder; files immutable.

    ``fail_updates_after`` makes the n-th later ``create_or_update`` raise, as a lost connection
    would, to interrupt a multi-step change half way.
    """

    def __init__(self, store, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder
        self.entities: dict[tuple[str, str], Any] = {}
        self.fail_updates_after: int | None = None

    def create_or_update(self, model):
        import copy
        import shutil
        from pathlib import Path

        from azure.core.exceptions import ServiceRequestError

        if self.fail_updates_after is not None:
            if self.fail_updates_after == 0:
                self.fail_updates_after = None
                raise ServiceRequestError("connection lost (injected)")
            self.fail_updates_after -= 1
        self.recorder.record("models.create_or_update", model._to_dict())
        key = (model.name, str(model.version))
        stored = self.entities.get(key)
        if stored is None:
            folder = self.store / model.name / str(model.version) / Path(model.path).name
            shutil.copytree(model.path, folder)
            stored = copy.deepcopy(model)
            stored.path = str(folder)
        elif model.path != stored.path:
            raise ValueError(f"{key}: a model version's files cannot change")
        stored.tags = dict(model.tags or {})
        self.entities[key] = stored
        return copy.deepcopy(stored)

    def get(self, name: str, version: str):
        import copy

        from azure.core.exceptions import ResourceNotFoundError

        if (name, str(version)) not in self.entities:
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        return copy.deepcopy(self.entities[(name, str(version))])

    def list(self, name: str):
        import copy

        from azure.core.exceptions import ResourceNotFoundError

        found = [copy.deepcopy(e) for (n, _), e in self.entities.items() if n == name]
        if not found:
            raise ResourceNotFoundError(f"model {name} not found")
        return iter(found)

    def download(self, name: str, version: str, download_path) -> None:
        import shutil
        from pathlib import Path

        self.recorder.record("models.download", name, version)
        stored = Path(self.get(name, version).path)
        shutil.copytree(stored, Path(download_path) / name / stored.name)
