"""The azure deployment target: QA on Azure Container Instances, production on AKS.

Keys come from Key Vault (`key_vault_url`) or the settings; cloud SDKs are imported only here.
"""

from typing import Any

from pydantic import Field

from mlops_assets.hosting.sizing import CLOUD, sizing
from mlops_assets.release.aci_target import AciQa, AciSpec
from mlops_assets.release.aks_target import AksProduction, KubernetesApis, ServingIdentity
from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.release.targets import DeploymentTarget, keys_from_settings
from mlops_assets.settings import get_settings


def keys_from_key_vault(secret_client: Any, secret_name: str) -> list[str]:
    """Comma-separated keys in one secret, so a rotation adds a key before removing the old one."""
    value = secret_client.get_secret(secret_name).value or ""
    return [k.strip() for k in value.split(",") if k.strip()]


class AzureDeploymentTarget(DeploymentTarget):
    subscription_id: str
    resource_group: str
    location: str
    registry_server: str = Field(description="ACR login server the images come from (…azurecr.io).")
    acr_pull_identity_id: str = Field(
        default="", description="Resource id of the user-assigned identity ACI pulls images with."
    )
    aci_group_name: str = "mlops-scoring-qa"
    aci_dns_label: str = Field(description="Public DNS label of the QA container group.")
    aci_port: int = 8080
    aks_namespace: str = "mlops"
    kube_context: str | None = Field(default=None, description="kubeconfig context of the AKS cluster.")
    public_url: str | None = Field(
        default=None, description="Production URL when an ingress/DNS name fronts the Service."
    )
    scoring_log_url: str = Field(
        default="", description="az:// root of the service's request log (scoring-logs/ under it)."
    )
    storage_account: str = Field(default="", description="Storage account of that root.")
    aci_identity_client_id: str = Field(
        default="",
        description="Client id of the ACI group's user-assigned identity: the request log writes as it.",
    )
    aks_workload_client_id: str = Field(
        default="",
        description="Client id of the scoring pods' workload identity (annotated on their ServiceAccount).",
    )
    rollout_timeout_seconds: float = 600
    poll_seconds: float = 5.0
    key_vault_url: str = Field(default="", description="Key Vault holding the scoring keys; empty: settings.")
    key_vault_secret: str = "scoring-keys"

    @property
    def backend_name(self) -> str:
        return "azure"

    def _credential(self):
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def aci_client(self) -> Any:
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        return ContainerInstanceManagementClient(self._credential(), self.subscription_id)

    def kubernetes_apis(self) -> KubernetesApis:
        return KubernetesApis.from_kubeconfig(self.kube_context)

    def secret_client(self) -> Any:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(self.key_vault_url, self._credential())

    def scoring_keys(self) -> list[str]:
        if self.key_vault_url:
            return keys_from_key_vault(self.secret_client(), self.key_vault_secret)
        return keys_from_settings()

    def _qa(self) -> AciQa:
        spec = AciSpec(
            self.resource_group,
            self.location,
            self.aci_group_name,
            self.aci_dns_label,
            self.aci_port,
            registry_server=self.registry_server,
            identity_id=self.acr_pull_identity_id,
            identity_client_id=self.aci_identity_client_id,
            scoring_log_url=self.scoring_log_url,
            storage_account=self.storage_account,
        )
        return AciQa(self.aci_client(), spec, self.ready_timeout_seconds, self.poll_seconds)

    def _production(self) -> AksProduction:
        return AksProduction(
            self.kubernetes_apis(),
            self.aks_namespace,
            self.rollout_timeout_seconds,
            self.poll_seconds,
            serving=ServingIdentity(self.scoring_log_url, self.storage_account, self.aks_workload_client_id),
        )

    def deploy_qa(self, release: Release) -> Endpoint:
        size = sizing(release.context, CLOUD)
        url = self._qa().deploy(release.image, release.version, self.scoring_keys(), _telemetry(), size)
        return Endpoint("qa", url, release.version, release.image, release.code_digest)

    def teardown_qa(self) -> None:
        self._qa().teardown()

    def production(self) -> Endpoint | None:
        aks = self._production()
        current = aks.current()
        if current is None:
            return None
        return Endpoint(
            "production",
            aks.service_url(self.public_url),
            current["version"],
            current["image"],
            current["code_digest"],
        )

    def release_production(self, release: Release) -> tuple[Endpoint, str]:
        aks = self._production()
        details = aks.apply(
            release.image,
            release.version,
            release.code_digest,
            self.scoring_keys(),
            _telemetry(),
            sizing(release.context, CLOUD),
        )
        url = aks.service_url(self.public_url)
        return Endpoint(
            "production", url, release.version, release.image, release.code_digest, details=details
        ), ("rolling update (maxUnavailable 0)")

    def restore_production(self, release: Release) -> Endpoint:
        restored, _ = self.release_production(release)
        return restored

    def stop_production(self) -> None:
        aks = self._production()
        aks.apis.apps.delete_namespaced_deployment(aks.name, aks.namespace)


def _telemetry() -> str | None:
    """The scoring service's Application Insights connection string: read when deploying, never
    kept in the resource's configuration (which the UI shows)."""
    secret = get_settings().applicationinsights_connection_string
    return secret.get_secret_value() if secret else None
