"""How a standalone Pipes script (the trainer, the batch scorer) talks to Dagster: blob storage
when launched on AML, Pipes' defaults otherwise. Standard library at import (the Azure and Pipes
libraries only when called): the AML jobs ship it beside their scripts.
"""

from __future__ import annotations

import os


def pipes_transport() -> dict:
    """Blob storage when launched on AML (MLOPS_PIPES_ACCOUNT_URL set); else Pipes' defaults.

    On AML the job authenticates with the cluster's managed identity; a connection string in
    AZURE_STORAGE_CONNECTION_STRING (the local AML stand-in with Azurite) takes precedence.
    """
    account_url = os.environ.get("MLOPS_PIPES_ACCOUNT_URL")
    if not account_url:
        return {}
    from azure.storage.blob import BlobServiceClient
    from dagster_pipes import PipesAzureBlobStorageContextLoader, PipesAzureBlobStorageMessageWriter

    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        client = BlobServiceClient.from_connection_string(connection)
    else:
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(account_url, credential=DefaultAzureCredential())
    interval = float(os.environ.get("MLOPS_PIPES_INTERVAL_SECONDS", "10"))
    return {
        "context_loader": PipesAzureBlobStorageContextLoader(client=client),
        "message_writer": PipesAzureBlobStorageMessageWriter(client=client, interval=interval),
    }
