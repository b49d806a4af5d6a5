"""dagster-azure's blob resource over the profile's storage account, with fsstore's outage bound (imported lazily)."""

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from azure.storage.blob import BlobServiceClient, ExponentialRetry
from dagster_azure.blob import (
    AzureBlobStorageDefaultCredential,
    AzureBlobStorageKeyCredential,
    AzureBlobStorageResource,
    AzureBlobStorageSASTokenCredential,
)

from mlops_assets.core.storage import StorageResource, connection_fields
from mlops_assets.storage.fsstore import BLOB_RETRIES


class BoundedBlobStorageResource(AzureBlobStorageResource):
    """Pipes polls and cleans up with many calls: with the SDK's default retries an outage would
    stall a step for minutes. The same bound as fsstore's blob clients."""

    @contextmanager
    def get_client(self) -> Generator[BlobServiceClient, None, None]:
        retries = ExponentialRetry(**BLOB_RETRIES)
        service = BlobServiceClient(
            account_url=self.account_url, credential=self._raw_credential(), retry_policy=retries
        )
        try:
            yield service
        finally:
            service.close()


def blob_resource(storage: StorageResource) -> Any:
    """The storage's account as a ``dagster_azure`` blob resource (for code that needs a BlobServiceClient)."""
    secret = storage.resolved_connection_string()
    if not secret:
        if not storage.account_name:
            raise ValueError(f"{storage.root_url}: no connection string, Key Vault secret or account name")
        return BoundedBlobStorageResource(
            account_url=f"https://{storage.account_name}.blob.core.windows.net",
            credential=AzureBlobStorageDefaultCredential(),
        )
    parsed = BlobServiceClient.from_connection_string(secret)
    fields = connection_fields(secret)
    if "AccountKey" in fields:
        credential: Any = AzureBlobStorageKeyCredential(key=fields["AccountKey"])
    else:
        credential = AzureBlobStorageSASTokenCredential(token=fields.get("SharedAccessSignature"))
    return BoundedBlobStorageResource(account_url=parsed.url.split("?")[0], credential=credential)
