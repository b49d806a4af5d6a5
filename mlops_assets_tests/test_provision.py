"""`mlops-assets provision` against a recording MLClient: the AmlCompute it would send, idempotently."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_assets.ops.provision import ClusterSpec, ProvisionError, provision_cluster
from mlops_assets_tests.cloud_recorders import Recorder


class RecordingMLClient:
    """MLClient.compute as AML answers it: get (404 until created), begin_create_or_update."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.clusters: dict = {}
        self.compute = SimpleNamespace(get=self._get, begin_create_or_update=self._create)

    def _get(self, name: str):
        from azure.core.exceptions import ResourceNotFoundError

        self.recorder.record("compute.get", name)
        if name not in self.clusters:
            raise ResourceNotFoundError(f"compute {name} not found")
        return self.clusters[name]

    def _create(self, compute):
        self.recorder.record("compute.begin_create_or_update", compute._to_dict())
        self.clusters[compute.name] = compute
        return SimpleNamespace(result=lambda: compute)


def test_the_cluster_scales_to_zero_and_provisioning_twice_changes_nothing():
    client = RecordingMLClient()
    spec = ClusterSpec("cpu-cluster", "Standard_DS3_v2", max_instances=4, idle_seconds=300)
    assert provision_cluster(client, spec) == "created"
    (sent,), _ = client.recorder.last("compute.begin_create_or_update")
    assert dict(sent) == {
        "name": "cpu-cluster",
        "type": "amlcompute",
        "size": "Standard_DS3_v2",
        "tier": "dedicated",
        "min_instances": 0,
        "max_instances": 4,
        "idle_time_before_scale_down": 300,
        "identity": {"type": "system_assigned"},  # what training jobs reach storage as
        "enable_node_public_ip": True,
    }
    assert provision_cluster(client, spec) == "unchanged"
    assert client.recorder.names().count("compute.begin_create_or_update") == 1

    bigger = ClusterSpec("cpu-cluster", "Standard_DS3_v2", max_instances=8, idle_seconds=300)
    assert provision_cluster(client, bigger) == "updated"
    assert client.recorder.last("compute.begin_create_or_update")[0][0]["max_instances"] == 8

    identity = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/train"
    )
    with_identity = ClusterSpec("cpu-cluster", "Standard_DS3_v2", 8, 300, identity_id=identity)
    assert provision_cluster(client, with_identity) == "updated"
    sent = client.recorder.last("compute.begin_create_or_update")[0][0]["identity"]
    assert sent == {"type": "user_assigned", "user_assigned_identities": [{"resource_id": identity}]}
    assert provision_cluster(client, with_identity) == "unchanged"

    with pytest.raises(ProvisionError, match="AML cannot resize a cluster"):
        provision_cluster(client, ClusterSpec("cpu-cluster", "Standard_NC6s_v3", 8, 300))


def test_provision_names_the_settings_it_needs(settings):
    from mlops_assets_tests.conftest import subprocess_env

    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlops-assets"), "provision"],
        env=subprocess_env(settings.home_dir),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        "needs MLOPS_AZURE_SUBSCRIPTION_ID, MLOPS_AZURE_RESOURCE_GROUP, MLOPS_AML_WORKSPACE" in result.stderr
    )
