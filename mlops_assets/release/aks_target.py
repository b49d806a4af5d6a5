"""Production on AKS: `deploy/k8s` applied with the kubernetes client, a rolling update, undone on failure.

The manifests are the source of truth; a release only sets the Deployment's image (pinned by
digest), version annotations and request-log destination, annotates the pods' ServiceAccount
with their workload identity (which the request log writes as), and writes the keys Secret (and
the telemetry Secret when Application Insights is configured). Every object is created or patched
(what `kubectl apply` does for objects this pipeline owns). The rollout is watched until all
replicas are updated and available; past the timeout, or when the new pods never become ready,
the previous pod template is put back (`kubectl rollout undo`) and the release fails.
"""

import base64
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.sizing import CLOUD, Sizing
from mlops_assets.release.build_context import REPO

MANIFESTS = REPO / "deploy" / "k8s"
VERSION_ANNOTATION = "mlops-assets/model-version"
IMAGE_ANNOTATION = "mlops-assets/image"
CODE_ANNOTATION = "mlops-assets/code-digest"
SIZING_ANNOTATION = "mlops-assets/sizing"  # the release's workers and CPUs, for an undo to put back
KEYS_SECRET = "scoring-keys"
TELEMETRY_SECRET = "scoring-telemetry"
WORKLOAD_CLIENT_ID = "azure.workload.identity/client-id"


@dataclass(frozen=True)
class ServingIdentity:
    """Where the pods' request log goes and who they are there (workload identity)."""

    scoring_log_url: str = ""  # az://container
    storage_account: str = ""
    workload_client_id: str = ""

    def environment(self) -> dict[str, str]:
        values = {
            "MLOPS_SCORING_LOG_URL": self.scoring_log_url,
            "MLOPS_AZURE_STORAGE_ACCOUNT": self.storage_account,
        }
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class KubernetesApis:
    """The API groups used; built from one ApiClient, or recording stand-ins in tests."""

    core: Any  # CoreV1Api
    apps: Any  # AppsV1Api
    autoscaling: Any  # AutoscalingV2Api
    policy: Any  # PolicyV1Api

    @classmethod
    def from_kubeconfig(cls, context: str | None = None) -> "KubernetesApis":
        from kubernetes import client, config

        api = config.new_client_from_config(context=context)
        return cls(
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.AutoscalingV2Api(api),
            client.PolicyV1Api(api),
        )


def load_manifests(folder: Path = MANIFESTS) -> dict[str, dict]:
    """Every object in the folder, by kind."""
    objects: dict[str, dict] = {}
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                objects[document["kind"]] = document
    return objects


def release_deployment(
    manifest: dict,
    image: str,
    version: str,
    code_digest: str,
    serving: ServingIdentity = ServingIdentity(),
    size: Sizing = CLOUD,
) -> dict:
    """The Deployment manifest for this release: image, annotations, the request log's destination
    and the project's size (workers; the CPU limit where it sets one) set, nothing else changed."""
    deployment = yaml.safe_load(yaml.safe_dump(manifest))  # a deep copy
    template = deployment["spec"]["template"]
    annotations = template["metadata"].setdefault("annotations", {})
    annotations.update({VERSION_ANNOTATION: version, IMAGE_ANNOTATION: image, CODE_ANNOTATION: code_digest})
    annotations[SIZING_ANNOTATION] = json.dumps(asdict(size), sort_keys=True)
    deployment["metadata"].setdefault("annotations", {})[VERSION_ANNOTATION] = version
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "scoring"]
    container["image"] = image
    container["args"] = ["--workers", str(size.workers)]
    if size.cpus is not None:
        resources = container.setdefault("resources", {})
        resources.setdefault("limits", {})["cpu"] = f"{size.cpus:g}"
        requested = resources.setdefault("requests", {}).get("cpu")
        if requested is None or _cores(requested) > size.cpus:
            resources["requests"]["cpu"] = f"{size.cpus:g}"
    env = container.setdefault("env", [])
    for name, value in serving.environment().items():
        env[:] = [variable for variable in env if variable["name"] != name]
        env.append({"name": name, "value": value})
    return deployment


def _cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("500m", "2") in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def service_account(manifest: dict, serving: ServingIdentity) -> dict:
    account = yaml.safe_load(yaml.safe_dump(manifest))
    if serving.workload_client_id:
        account["metadata"].setdefault("annotations", {})[WORKLOAD_CLIENT_ID] = serving.workload_client_id
    return account


def keys_secret(keys: list[str]) -> dict:
    return _secret(KEYS_SECRET, "keys", ",".join(keys))


def telemetry_secret(connection_string: str) -> dict:
    return _secret(TELEMETRY_SECRET, "connection-string", connection_string)


def _secret(name: str, key: str, value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "mlops-assets"}},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


def _apply(read, create, patch, name: str, namespace: str, body: dict) -> None:
    try:
        read(name, namespace)
    except Exception as exc:
        if not _not_found(exc):
            raise
        create(namespace, body)
        return
    patch(name, namespace, body)


class AksProduction:
    def __init__(
        self,
        apis: KubernetesApis,
        namespace: str,
        rollout_timeout: float = 600,
        poll_seconds: float = 2.0,
        manifests: Path = MANIFESTS,
        serving: ServingIdentity = ServingIdentity(),
    ) -> None:
        self.apis = apis
        self.serving = serving
        self.namespace = namespace
        self.rollout_timeout = rollout_timeout
        self.poll_seconds = poll_seconds
        self.objects = load_manifests(manifests)
        self.name = self.objects["Deployment"]["metadata"]["name"]

    def current(self) -> dict | None:
        """The running release's annotations (version, image, code digest), or None."""
        try:
            deployment = self.apis.apps.read_namespaced_deployment(self.name, self.namespace)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        annotations = _get(deployment, "spec", "template", "metadata", "annotations") or {}
        if VERSION_ANNOTATION not in annotations:
            return None
        sized = json.loads(annotations[SIZING_ANNOTATION]) if SIZING_ANNOTATION in annotations else {}
        return {
            "version": annotations[VERSION_ANNOTATION],
            "image": annotations.get(IMAGE_ANNOTATION, ""),
            "code_digest": annotations.get(CODE_ANNOTATION, ""),
            "size": Sizing(**sized) if sized else CLOUD,
        }

    def apply(
        self,
        image: str,
        version: str,
        code_digest: str,
        keys: list[str],
        telemetry: str | None = None,
        size: Sizing = CLOUD,
    ) -> dict:
        """Roll the release out; on failure put the previous template back and raise DeploymentError."""
        ns, core, apps = self.namespace, self.apis.core, self.apis.apps
        secrets = [keys_secret(keys), *([telemetry_secret(telemetry)] if telemetry else [])]
        for secret in secrets:
            _apply(
                core.read_namespaced_secret,
                core.create_namespaced_secret,
                core.patch_namespaced_secret,
                secret["metadata"]["name"],
                ns,
                secret,
            )
        account = service_account(self.objects["ServiceAccount"], self.serving)
        _apply(
            core.read_namespaced_service_account,
            core.create_namespaced_service_account,
            core.patch_namespaced_service_account,
            account["metadata"]["name"],
            ns,
            account,
        )
        for kind, (read, create, patch) in {
            "Service": (
                core.read_namespaced_service,
                core.create_namespaced_service,
                core.patch_namespaced_service,
            ),
            "PodDisruptionBudget": (
                self.apis.policy.read_namespaced_pod_disruption_budget,
                self.apis.policy.create_namespaced_pod_disruption_budget,
                self.apis.policy.patch_namespaced_pod_disruption_budget,
            ),
            "HorizontalPodAutoscaler": (
                self.apis.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                self.apis.autoscaling.create_namespaced_horizontal_pod_autoscaler,
                self.apis.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            ),
        }.items():
            body = self.objects[kind]
            _apply(read, create, patch, body["metadata"]["name"], ns, body)
        previous = self.current()
        body = release_deployment(self.objects["Deployment"], image, version, code_digest, self.serving, size)
        _apply(
            apps.read_namespaced_deployment,
            apps.create_namespaced_deployment,
            apps.patch_namespaced_deployment,
            self.name,
            ns,
            body,
        )
        failure = self._wait_rollout()
        if failure is None:
            return {"namespace": ns, "deployment": self.name, "image": image, "version": version}
        if previous is None:
            raise DeploymentError(f"AKS rollout of version {version} failed ({failure}); nothing to undo")
        undo = release_deployment(
            self.objects["Deployment"],
            previous["image"],
            previous["version"],
            previous["code_digest"],
            self.serving,
            previous["size"],
        )
        apps.patch_namespaced_deployment(self.name, ns, undo)
        raise DeploymentError(
            f"AKS rollout of version {version} failed ({failure}); undone to version {previous['version']}"
        )

    def _wait_rollout(self) -> str | None:
        """None once every replica runs the new template; otherwise why not (`kubectl rollout status`)."""
        deadline = time.monotonic() + self.rollout_timeout
        while True:
            status = self.apis.apps.read_namespaced_deployment_status(self.name, self.namespace)
            generation = _get(status, "metadata", "generation") or 0
            observed = _get(status, "status", "observed_generation") or 0
            wanted = _get(status, "spec", "replicas") or 0
            updated = _get(status, "status", "updated_replicas") or 0
            available = _get(status, "status", "available_replicas") or 0
            total = _get(status, "status", "replicas") or 0
            for condition in _get(status, "status", "conditions") or []:
                if (
                    _get(condition, "type") == "Progressing"
                    and _get(condition, "reason") == "ProgressDeadlineExceeded"
                ):
                    return f"progress deadline exceeded: {_get(condition, 'message')}"
            if observed >= generation and updated == wanted and available == wanted and total == wanted:
                return None
            if time.monotonic() > deadline:
                return f"{updated}/{wanted} updated, {available} available after {self.rollout_timeout:.0f} s"
            time.sleep(self.poll_seconds)

    def service_url(self, public_url: str | None) -> str:
        if public_url:
            return public_url.rstrip("/")
        service = self.apis.core.read_namespaced_service(
            self.objects["Service"]["metadata"]["name"], self.namespace
        )
        ingress = (_get(service, "status", "load_balancer", "ingress") or [None])[0]
        host = ingress and (_get(ingress, "ip") or _get(ingress, "hostname"))
        if not host:
            raise DeploymentError("the scoring Service has no load-balancer address yet")
        port = self.objects["Service"]["spec"]["ports"][0]["port"]
        return f"http://{host}:{port}"


def _get(obj: Any, *path: str) -> Any:
    """Read a field from a kubernetes model object or a plain dict."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj
