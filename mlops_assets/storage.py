"""Storage behind one fsspec root (a local folder or ``az://container``) and the IO manager over it."""

import hashlib
import io
import json
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import fsspec
import pandas as pd
from fsspec.core import url_to_fs
from pydantic import PrivateAttr


@dataclass(frozen=True)
class StoredFile:
    """One file in storage as listed: its path relative to the root, size and a version tag."""

    path: str
    size: int
    version: str  # etag on blob storage, sha256 of the content on a local folder

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


class Storage:
    """Relative paths under a root URL; every write lands whole or not at all."""

    def __init__(self, root_url: str, **storage_options: Any) -> None:
        self.root_url = root_url.rstrip("/")
        self.fs, self._root = url_to_fs(self.root_url, **storage_options)
        self._is_local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)

    def _full(self, path: str) -> str:
        return posixpath.join(self._root, path.lstrip("/"))

    def uri(self, path: str) -> str:
        """A URL another process (train.py, a registry) can open with fsspec."""
        return f"{self.root_url}/{path.lstrip('/')}"

    def exists(self, path: str) -> bool:
        return self.fs.exists(self._full(path))

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(self._full(path))

    def write_bytes(self, path: str, data: bytes) -> str:
        full = self._full(path)
        if self._is_local:
            # Write beside, then rename: a reader never sees half a file.
            self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
            tmp = f"{full}.tmp-{uuid.uuid4().hex}"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, full)
        else:
            self.fs.pipe_file(full, data)  # a blob upload is atomic already
        return self.uri(path)

    def write_json(self, path: str, obj: Any) -> str:
        return self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        """Files directly or deeply under ``prefix``, skipping in-flight temporary writes."""
        base = self._full(prefix)
        if not self.fs.exists(base):
            return
        for full, info in sorted(self.fs.find(base, detail=True).items()):
            if info.get("type") != "file" or ".tmp-" in full:
                continue
            rel = posixpath.relpath(full, self._root)
            yield StoredFile(path=rel, size=int(info["size"]), version=self._version(full, info))

    def _version(self, full: str, info: dict[str, Any]) -> str:
        etag = info.get("etag") or info.get("ETag")
        if etag:
            return str(etag).strip('"')
        return hashlib.sha256(self.fs.cat_file(full)).hexdigest()


class StorageResource(dg.ConfigurableResource):
    """The profile's storage root, e.g. ``file:///home/me/.mlops/storage`` or ``az://mlops``."""

    root_url: str
    _storage: Storage | None = PrivateAttr(default=None)

    def get(self) -> Storage:
        if self._storage is None:
            self._storage = Storage(self.root_url)
        return self._storage


def asset_path(asset_key: dg.AssetKey, partition_key: str | None, suffix: str) -> str:
    name = partition_key if partition_key is not None else "value"
    return posixpath.join("assets", *asset_key.path, f"{name}.{suffix}")


_SUFFIX = {pd.DataFrame: "parquet", bytes: "bin"}


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
        uri = self.storage.get().write_bytes(path, data)
        context.add_output_metadata({"storage_uri": dg.MetadataValue.path(uri)})

    def load_input(self, context: dg.InputContext) -> Any:
        storage = self.storage.get()
        partition = _partition(context)
        for suffix in ("parquet", "bin", "json"):
            path = asset_path(context.asset_key, partition, suffix)
            if storage.exists(path):
                return load_stored_value(storage, path)
        raise FileNotFoundError(
            f"{context.asset_key.to_user_string()}"
            f"{f'[{partition}]' if partition else ''}: not in storage; materialize it first"
        )


def load_stored_value(storage: Storage, path: str) -> Any:
    data = storage.read_bytes(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if path.endswith(".bin"):
        return data
    return json.loads(data)


def _partition(context: dg.InputContext | dg.OutputContext) -> str | None:
    return context.asset_partition_key if context.has_asset_partitions else None


def relative_path(storage: Storage, uri: str) -> str:
    """The path under ``storage``'s root of a URI it handed out, e.g. to train.py."""
    prefix = storage.root_url + "/"
    if not uri.startswith(prefix):
        raise ValueError(f"{uri} is not under the storage root {storage.root_url}")
    return uri[len(prefix) :]
