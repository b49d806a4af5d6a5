"""QA on Azure Container Instances: one container group from the ACR image, deleted after QA.

The group pulls the image with a user-assigned managed identity that has AcrPull on the registry
(no registry password anywhere), gets the scoring keys as secure environment variables (never
shown by the ACI API), and exposes the service on a public DNS label for the smoke test. Its
request log goes to the storage account's ``scoring-logs/`` as that same identity (AZURE_CLIENT_ID
picks it for DefaultAzureCredential), and telemetry to Application Insights (a secure variable).
"""

import time
from dataclasses import dataclass
from typing import Any

from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.sizing import CLOUD, Sizing

CONTAINER = "scoring"


@dataclass(frozen=True)
class AciSpec:
    resource_group: str
    location: str
    group_name: str
    dns_label: str
    port: int = 8080
    cpu: float = 1.0
    memory_gb: float = 1.5
    registry_server: str = ""
    identity_id: str = ""  # user-assigned identity with AcrPull (and Storage Blob Data Contributor)
    identity_client_id: str = ""  # its client id: the identity the service's request log writes as
    scoring_log_url: str = ""  # az://container: the request log's root
    storage_account: str = ""


def container_group(
    spec: AciSpec,
    image: str,
    version: str,
    keys: list[str],
    telemetry: str | None = None,
    size: Sizing = CLOUD,
) -> Any:
    """The QA group for ``image``: ``size`` (the release's project's) sets its workers, and its
    CPUs where the project sets them (else the spec's)."""
    from azure.mgmt.containerinstance import models as m

    environment = [
        m.EnvironmentVariable(name="MLOPS_SCORING_KEYS", secure_value=",".join(keys)),
        m.EnvironmentVariable(name="MLOPS_DEPLOYMENT_ID", value=f"{spec.group_name}-v{version}"),
    ]
    plain = {
        "MLOPS_SCORING_LOG_URL": spec.scoring_log_url,
        "MLOPS_AZURE_STORAGE_ACCOUNT": spec.storage_account,
        "AZURE_CLIENT_ID": spec.identity_client_id,
    }
    environment += [m.EnvironmentVariable(name=name, value=value) for name, value in plain.items() if value]
    if telemetry:
        environment.append(
            m.EnvironmentVariable(name="APPLICATIONINSIGHTS_CONNECTION_STRING", secure_value=telemetry)
        )

    probe_get = {"port": spec.port, "scheme": "http"}
    container = m.Container(
        name=CONTAINER,
        image=image,
        command=[
            "mlops-assets",
            "serve",
            "--model-dir",
            "/app/model",
            "--host",
            "0.0.0.0",
            "--port",
            str(spec.port),
            "--workers",
            str(size.workers),
        ],
        ports=[m.ContainerPort(port=spec.port, protocol="TCP")],
        environment_variables=environment,
        resources=m.ResourceRequirements(
            requests=m.ResourceRequests(cpu=size.cpus or spec.cpu, memory_in_gb=spec.memory_gb),
            limits=m.ResourceLimits(cpu=size.cpus or spec.cpu, memory_in_gb=spec.memory_gb),
        ),
        readiness_probe=m.ContainerProbe(
            http_get=m.ContainerHttpGet(path="/health/ready", **probe_get),
            period_seconds=5,
            failure_threshold=3,
            timeout_seconds=2,
        ),
        liveness_probe=m.ContainerProbe(
            http_get=m.ContainerHttpGet(path="/health/live", **probe_get),
            initial_delay_seconds=15,
            period_seconds=10,
            failure_threshold=3,
            timeout_seconds=2,
        ),
    )
    group = m.ContainerGroup(
        location=spec.location,
        containers=[container],
        os_type="Linux",
        restart_policy="Always",
        ip_address=m.IpAddress(
            type="Public",
            dns_name_label=spec.dns_label,
            # the SDK's default, Unsecure, lets anyone reuse the label once the group is deleted
            auto_generated_domain_name_label_scope="TenantReuse",
            ports=[m.Port(port=spec.port, protocol="TCP")],
        ),
        tags={"mlops-assets/model-version": version, "mlops-assets/role": "qa"},
    )
    if spec.identity_id:
        group.identity = m.ContainerGroupIdentity(
            type="UserAssigned", user_assigned_identities={spec.identity_id: m.UserAssignedIdentities()}
        )
        group.image_registry_credentials = [
            m.ImageRegistryCredential(server=spec.registry_server, identity=spec.identity_id)
        ]
    return group


class AciQa:
    def __init__(
        self, client: Any, spec: AciSpec, ready_timeout: float = 600, poll_seconds: float = 5
    ) -> None:
        self.client = client  # ContainerInstanceManagementClient
        self.spec = spec
        self.ready_timeout = ready_timeout
        self.poll_seconds = poll_seconds

    def deploy(
        self, image: str, version: str, keys: list[str], telemetry: str | None = None, size: Sizing = CLOUD
    ) -> str:
        """Create or replace the QA group and wait until its container runs; the service URL."""
        groups = self.client.container_groups
        spec = self.spec
        group = container_group(spec, image, version, keys, telemetry, size)
        groups.begin_create_or_update(spec.resource_group, spec.group_name, group).result()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            group = groups.get(spec.resource_group, spec.group_name)
            state = group.provisioning_state
            running = [
                c
                for c in group.containers
                if c.instance_view
                and c.instance_view.current_state
                and c.instance_view.current_state.state == "Running"
            ]
            if state == "Succeeded" and running:
                return f"http://{group.ip_address.fqdn or group.ip_address.ip}:{spec.port}"
            if state in ("Failed", "Canceled") or time.monotonic() > deadline:
                events = [
                    e.message
                    for c in group.containers
                    if c.instance_view
                    for e in (c.instance_view.events or [])
                ]
                self.teardown()
                raise DeploymentError(
                    f"ACI group {spec.group_name} ({image}) not running: provisioning {state}; "
                    f"events: {'; '.join(events[-3:]) or 'none'}; deleted"
                )
            time.sleep(self.poll_seconds)

    def teardown(self) -> None:
        self.client.container_groups.begin_delete(self.spec.resource_group, self.spec.group_name).result()
