"""dagster-azure's blob resource, with the storage outage bound fsstore uses (imported lazily)."""

from collections.abc import Generator
from contextlib import contextmanager

from azure.storage.blob import BlobServiceClient, ExponentialRetry
from dagster_azure.blob import AzureBlobStorageResource

from mlops_assets.fsstore import BLOB_RETRIES


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
