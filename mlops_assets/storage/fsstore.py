"""Files under one fsspec root: a local folder or ``az://container``. Import-light (fsspec only).

The scoring service writes its request logs through this, so it must not import dagster or pandas.
"""

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs


@dataclass(frozen=True)
class StoredFile:
    """One file in storage as listed: its path relative to the root, size and a version tag."""

    path: str
    size: int
    version: str  # etag on blob storage, sha256 of the content on a local folder
    modified: float = 0.0  # seconds since the epoch, as the store reports it (0: unknown)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


# (path, size, mtime) -> sha256, for this process (the code server that evaluates sensors).
_CONTENT_HASHES: dict[tuple[str, int, Any], str] = {}
_CONTENT_HASHES_MAX = 100_000


def credential_options(connection_string: str | None, account_name: str | None) -> dict[str, Any]:
    """fsspec options for an ``az://`` root: a connection string, else the account with
    DefaultAzureCredential; none for a local root."""
    if connection_string:
        return {"connection_string": connection_string}
    if account_name:
        return {"account_name": account_name, "anon": False}
    return {}


class StoragePathError(ValueError):
    """A path that would reach outside the root (``..``): refused, wherever it came from (a sensor,
    a partition added in the UI, the CLI)."""


def checked_path(path: str) -> str:
    """``path`` relative to the root; a StoragePathError if a part of it climbs out (``..``)."""
    parts = path.replace("\\", "/").split("/")
    if ".." in parts or "\0" in path:
        raise StoragePathError(
            f"{path!r}: a storage path may not contain '..' or NUL (it would leave its prefix)"
        )
    return path.lstrip("/")


class Storage:
    """Relative paths under a root URL; every write lands whole or not at all."""

    def __init__(self, root_url: str, **storage_options: Any) -> None:
        self.root_url = root_url.rstrip("/")
        self.fs, self._root = url_to_fs(self.root_url, **storage_options)
        self._is_local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)
        if hasattr(self.fs, "service_client"):
            _bound_blob_retries(self.fs)

    @property
    def is_local(self) -> bool:
        """Whether the root is a folder of this machine (its paths are the files themselves)."""
        return self._is_local

    def fs_path(self, path: str) -> str:
        """The path as ``self.fs`` names it (for streaming with ``self.fs.open``)."""
        return posixpath.join(self._root, checked_path(path))

    def uri(self, path: str) -> str:
        """A URL another process (train.py, a registry) can open with fsspec."""
        return f"{self.root_url}/{checked_path(path)}"

    def exists(self, path: str) -> bool:
        return self.fs.exists(self.fs_path(path))

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(self.fs_path(path))

    def write_bytes(self, path: str, data: bytes) -> str:
        full = self.fs_path(path)
        if self._is_local:
            # Write beside, then rename: a reader never sees half a file.
            self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
            tmp = f"{full}.tmp-{uuid.uuid4().hex}"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, full)
        else:
            self.fs.pipe_file(full, data)  # a blob upload is atomic already
        return self.uri(path)

    def put_file(self, local_path: str, path: str) -> str:
        """Write ``path`` from a file of this machine, streamed, whole or not at all (as
        ``write_bytes``)."""
        full = self.fs_path(path)
        if self._is_local:
            self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
            tmp = f"{full}.tmp-{uuid.uuid4().hex}"
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, full)
        else:
            self.fs.put_file(local_path, full)  # one blob, committed when the last block is
        return self.uri(path)

    @contextlib.contextmanager
    def local_file(self, path: str) -> Iterator[str]:
        """A file of this machine holding ``path``'s bytes, for as long as the block lasts: the
        file itself on a local root (read it, never write it), else a download, removed after."""
        if self._is_local:
            yield self.fs_path(path)
            return
        with tempfile.TemporaryDirectory(prefix="mlops-storage-") as folder:
            local = os.path.join(folder, posixpath.basename(path) or "file")
            self.fs.get_file(self.fs_path(path), local)
            yield local

    @contextlib.contextmanager
    def copied(self, source: str, path: str) -> Iterator[str]:
        """``source``'s bytes written at ``path`` too, streamed (whole or not at all, as
        ``write_bytes``), and a file of this machine with the copy's bytes for as long as the block
        lasts: the copy itself on a local root (``source`` may be replaced meanwhile), else the one
        download the upload was made from."""
        with self.local_file(source) as local:
            self.put_file(local, path)
            yield self.fs_path(path) if self._is_local else local

    def remove(self, path: str) -> None:
        """Delete ``path`` if it is there."""
        full = self.fs_path(path)
        if self.fs.exists(full):
            self.fs.rm_file(full)

    def create_bytes(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if nothing is there yet (whole, as ``write_bytes``): False if it
        was. Two writers racing for one path never both win: how an append-only log stays one."""
        full = self.fs_path(path)
        if self._is_local:
            self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
            tmp = f"{full}.tmp-{uuid.uuid4().hex}"
            self.fs.pipe_file(tmp, data)
            try:
                os.link(tmp, full)  # fails if ``full`` exists, atomically
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        try:
            self.fs.pipe_file(full, data, overwrite=False)  # Blob Storage: If-None-Match: *
        except Exception as exc:
            if isinstance(exc, FileExistsError) or type(exc).__name__ == "ResourceExistsError":
                return False
            raise
        return True

    def modified(self, path: str) -> float:
        return _modified(self.fs.info(self.fs_path(path)))

    def write_json(self, path: str, obj: Any) -> str:
        return self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def list_files(self, prefix: str, versions: bool = True) -> Iterator[StoredFile]:
        """Files directly or deeply under ``prefix``, skipping in-flight temporary writes.

        ``versions=False`` leaves ``version`` empty: on a local folder the version is a content
        hash, too costly for many files that are never rewritten (the scoring logs).
        """
        base = self.fs_path(prefix)
        if not self.fs.exists(base):
            return
        for full, info in sorted(self.fs.find(base, detail=True).items()):
            if info.get("type") != "file" or ".tmp-" in full:
                continue
            rel = posixpath.relpath(full, self._root)
            version = self._version(full, info) if versions else ""
            yield StoredFile(path=rel, size=int(info["size"]), version=version, modified=_modified(info))

    def _version(self, full: str, info: dict[str, Any]) -> str:
        etag = info.get("etag") or info.get("ETag")
        if etag:
            return str(etag).strip('"')
        # A local file's version is its content hash (the same bytes landed again are the same
        # version). Sensors list every tick; hashing is redone only when size or mtime changed.
        key = (full, int(info["size"]), info.get("mtime"))
        digest = _CONTENT_HASHES.get(key)
        if digest is None:
            with self.fs.open(full, "rb") as handle:  # streamed: scoring inputs can be gigabytes
                digest = sha256_of(handle)
            if len(_CONTENT_HASHES) >= _CONTENT_HASHES_MAX:
                _CONTENT_HASHES.clear()
            _CONTENT_HASHES[key] = digest
        return digest


def sha256_of(handle: Any) -> str:
    """The sha256 of what an open binary file holds, read a block at a time."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(4 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


# Storage's own policy waits 15 s, then 18 s, 24 s, ... per call (80 s against a closed port,
# measured here). Three quick retries (about 10 s), then the error: for every blob client we make.
BLOB_RETRIES = {"initial_backoff": 1, "increment_base": 2, "retry_total": 3}


def _bound_blob_retries(fs: Any) -> None:
    """adlfs keeps the storage SDK's default retries, longer than a Dagster sensor tick may take:
    an outage would time the tick out instead of reporting it, and the request log would spill
    minutes late. The same client again (its account URL and credential, whichever adlfs chose:
    a connection string's key, a managed or workload identity, a SAS), with bounded retries."""
    from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

    client = fs.service_client
    fs.service_client = BlobServiceClient(
        client.url, credential=client.credential, retry_policy=ExponentialRetry(**BLOB_RETRIES)
    )


def _modified(info: dict[str, Any]) -> float:
    """Local folders report ``mtime`` (seconds), blob stores ``last_modified`` (a datetime)."""
    value = info.get("mtime") or info.get("last_modified") or info.get("LastModified")
    if value is None:
        return 0.0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def relative_path(storage: Storage, uri: str) -> str:
    """The path under ``storage``'s root of a URI it handed out, e.g. to train.py."""
    prefix = storage.root_url + "/"
    if not uri.startswith(prefix):
        raise ValueError(f"{uri} is not under the storage root {storage.root_url}")
    return uri[len(prefix) :]
