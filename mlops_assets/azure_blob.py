"""dagster-azure's blob resource, with the storage outage bound fsstore uses (imported lazily)."""

from collections.abc import Generator
from contextlib import contextmanager

from azure.storage.blob import BlobServiceClient, ExponentialRetry
from dagster_azure.blob import AzureBlobStorageResource


class BoundedBlobStorageResource(AzureBlobStorageResource):
    """The SDK's default retries wait 15 s, 18 s, 24 s… per call (80 s against a closed port,
    measured here); Pipes polls and cleans up with many calls, so an outage would stall a step for
    minutes. Three quick retries (about 10 s), then the error."""

    @contextmanager
    def get_client(self) -> Generator[BlobServiceClient, None, None]:
        retries = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3)
        service = BlobServiceClient(
            account_url=self.account_url, credential=self._raw_credential(), retry_policy=retries
        )
        try:
            yield service
        finally:
            service.close()
