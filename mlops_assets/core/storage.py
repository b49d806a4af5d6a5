"""Storage as Dagster sees it: the resource over the profile's root and the IO manager (parquet, bytes, JSON)."""

import io
import json
import posixpath
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from mlops_assets.storage.fsstore import Storage, StoredFile, credential_options, relative_path

__all__ = [
    "Storage",
    "StorageIOManager",
    "StorageResource",
    "StoredFile",
    "asset_path",
    "load_stored_value",
    "relative_path",
]


class StorageResource(dg.ConfigurableResource):
    """The profile's storage root, e.g. ``file:///home/me/.mlops/storage`` or ``az://mlops``.

    An ``az://`` root authenticates with, in this order: ``connection_string`` (account key or
    SAS; give it as an EnvVar), the Key Vault secret ``key_vault_secret`` holding one, or, with
    ``account_name`` alone, ``DefaultAzureCredential`` (a managed identity, ``az login``).
    """

    root_url: str
    connection_string: str | None = Field(
        default=None,
        description="Azure Storage connection string for az:// roots (give it as an EnvVar: it is a secret).",
    )
    account_name: str | None = Field(
        default=None, description="Storage account of an az:// root reached with DefaultAzureCredential."
    )
    key_vault_url: str = Field(default="", description="Key Vault holding the connection string.")
    key_vault_secret: str = Field(default="", description="Name of that secret.")
    _storage: Storage | None = PrivateAttr(default=None)
    _resolved: str | None = PrivateAttr(default=None)

    def get(self) -> Storage:
        if self._storage is None:
            options = credential_options(self.resolved_connection_string(), self.account_name)
            self._storage = Storage(self.root_url, **options)
        return self._storage

    def resolved_connection_string(self) -> str | None:
        """The connection string from the setting or, fetched once, from Key Vault."""
        if isinstance(self.connection_string, dg.EnvVar):  # used outside a run: resolve it here
            return self.connection_string.get_value()
        if self.connection_string:
            return self.connection_string
        if self._resolved is None and self.key_vault_url and self.key_vault_secret:
            self._resolved = self.secret_client().get_secret(self.key_vault_secret).value or ""
        return self._resolved or None

    def storage_account(self) -> str | None:
        """The account's name, from the setting or the connection string (never the secret part)."""
        if self.account_name:
            return self.account_name
        fields = connection_fields(self.resolved_connection_string() or "")
        if "AccountName" in fields:
            return fields["AccountName"]
        if "BlobEndpoint" in fields:  # a SAS connection string names the account only in its endpoint
            from urllib.parse import urlsplit

            endpoint = urlsplit(fields["BlobEndpoint"])
            if endpoint.hostname and endpoint.hostname.endswith(".blob.core.windows.net"):
                return endpoint.hostname.split(".", 1)[0]
            return endpoint.path.strip("/").split("/", 1)[0] or None  # emulator: path-style account
        return None

    def secret_client(self) -> Any:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        return SecretClient(vault_url=self.key_vault_url, credential=DefaultAzureCredential())


def connection_fields(connection_string: str) -> dict[str, str]:
    """The key=value fields of an Azure Storage connection string."""
    return dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)


def asset_path(asset_key: dg.AssetKey, partition_key: str | None, suffix: str) -> str:
    name = partition_key if partition_key is not None else "value"
    return posixpath.join("assets", *asset_key.path, f"{name}.{suffix}")


_SUFFIX = {pd.DataFrame: "parquet", bytes: "bin"}
_SUFFIXES = ("parquet", "bin", "json")


class StorageIOManager(dg.ConfigurableIOManager):
    """Frames as parquet, raw bytes as they are, anything else JSON, under ``assets/`` in storage."""

    storage: dg.ResourceDependency[StorageResource]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        suffix = _SUFFIX.get(type(obj), "json")
        path = asset_path(context.asset_key, _partition(context), suffix)
        if isinstance(obj, pd.DataFrame):
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            data = buffer.getvalue()
        elif isinstance(obj, bytes):
            data = obj
        else:
            data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        storage = self.storage.get()
        uri = storage.write_bytes(path, data)
        for other in set(_SUFFIXES) - {suffix}:  # one stored form at a time: load_input reads the first
            storage.remove(asset_path(context.asset_key, _partition(context), other))
        context.add_output_metadata({"storage_uri": dg.MetadataValue.path(uri)})

    def load_input(self, context: dg.InputContext) -> Any:
        storage = self.storage.get()
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            return self._load_window(storage, context)
        partition = _partition(context)
        path = _stored_path(storage, context.asset_key, partition)
        if path is not None:
            return load_stored_value(storage, path)
        raise FileNotFoundError(
            f"{context.asset_key.to_user_string()}"
            f"{f'[{partition}]' if partition else ''}: not in storage; materialize it first"
        )

    @staticmethod
    def _load_window(storage: Storage, context: dg.InputContext) -> dict[str, Any]:
        """Several partitions (a window mapping): those materialised, by key; a gap is not an error."""
        paths = {key: _stored_path(storage, context.asset_key, key) for key in context.asset_partition_keys}
        return {key: load_stored_value(storage, path) for key, path in paths.items() if path is not None}


def _stored_path(storage: Storage, asset_key: dg.AssetKey, partition: str | None) -> str | None:
    """Where handle_output put this asset (partition), whichever format it was stored in."""
    for suffix in _SUFFIXES:
        path = asset_path(asset_key, partition, suffix)
        if storage.exists(path):
            return path
    return None


def load_stored_value(storage: Storage, path: str) -> Any:
    data = storage.read_bytes(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if path.endswith(".bin"):
        return data
    return json.loads(data)


def _partition(context: dg.InputContext | dg.OutputContext) -> str | None:
    return context.asset_partition_key if context.has_asset_partitions else None
