"""`mlops-assets provision`: the AML compute cluster training runs on, created or updated idempotently.

A command, not an asset: both profiles keep the same asset graph. The cluster scales to zero
(``min_instances=0``), so it costs nothing while idle; node bounds and the idle time come from
the settings. azure-ai-ml is imported only here.
"""

from dataclasses import dataclass
from typing import Any

COMPARED = ("size", "min_instances", "max_instances", "idle_time_before_scale_down", "tier")


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    size: str
    max_instances: int
    idle_seconds: int
    tier: str = "dedicated"
    identity_id: str = ""  # resource id of a user-assigned identity; empty: a system-assigned one

    def entity(self) -> Any:
        from azure.ai.ml.entities import AmlCompute, IdentityConfiguration, ManagedIdentityConfiguration

        # Training jobs reach storage as this identity: no key in any job definition.
        if self.identity_id:
            identity = IdentityConfiguration(
                type="user_assigned",
                user_assigned_identities=[ManagedIdentityConfiguration(resource_id=self.identity_id)],
            )
        else:
            identity = IdentityConfiguration(type="system_assigned")
        return AmlCompute(
            name=self.name,
            size=self.size,
            min_instances=0,  # no node, no cost, while nothing trains
            max_instances=self.max_instances,
            idle_time_before_scale_down=self.idle_seconds,
            tier=self.tier,
            identity=identity,
        )


class ProvisionError(RuntimeError):
    """A change AML cannot make in place; the message says what to do."""


def provision_cluster(ml_client: Any, spec: ClusterSpec) -> str:
    """Create the cluster, or update its bounds; 'created', 'updated' or 'unchanged'."""
    from azure.core.exceptions import ResourceNotFoundError

    wanted = spec.entity()
    try:
        existing = ml_client.compute.get(spec.name)
    except ResourceNotFoundError:
        existing = None
    if existing is not None:
        have = {k: getattr(existing, k, None) for k in COMPARED} | {"identity": _identity(existing)}
        want = {k: getattr(wanted, k) for k in COMPARED} | {"identity": _identity(wanted)}
        if str(have["size"]).lower() != spec.size.lower():
            raise ProvisionError(
                f"compute {spec.name} exists with size {have['size']}, not {spec.size}: AML cannot resize a "
                "cluster; delete it first or set MLOPS_AML_COMPUTE_NAME to another name"
            )
        if {k: v for k, v in have.items() if k != "size"} == {k: v for k, v in want.items() if k != "size"}:
            return "unchanged"
    ml_client.compute.begin_create_or_update(wanted).result()
    return "updated" if existing is not None else "created"


def _identity(compute: Any) -> tuple:
    identity = getattr(compute, "identity", None)
    if identity is None:
        return ()
    assigned = sorted(str(i.resource_id).lower() for i in (identity.user_assigned_identities or []))
    return (str(identity.type).lower(), *assigned)
