"""The one place an Azure ML ``MLClient`` is built (training backend, registry, provision)."""

from typing import Any


def aml_client(subscription_id: str, resource_group: str, workspace: str) -> Any:
    """An ``MLClient`` on ``DefaultAzureCredential``; azure.ai.ml (~3 s to import) only when used."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), subscription_id, resource_group, workspace)
