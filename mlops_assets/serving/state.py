"""A scoring service process's state: what it keeps between requests, and its lifespan.

Zero-downtime swap: the served model is one immutable object behind an attribute. A watcher
notices a new release in ``model_dir`` (a symlink moved to a new folder, or a new manifest),
loads and verifies it in a thread, then rebinds the attribute; requests in flight finish on the
object they already hold. A release that fails verification is refused and the old one stays.
"""

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from mlops_assets.model.loaded import LoadedModel, load_release
from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.model.rows import ServingSpec
from mlops_assets.serving import metrics
from mlops_assets.serving.drain import Drain
from mlops_assets.serving.keys import read_keys
from mlops_assets.serving.openapi import openapi_document
from mlops_assets.serving.request_log import RequestLogWriter
from mlops_assets.settings import SERVICE_LOG_CLOSE_SECONDS
from mlops_assets.storage.fsstore import Storage

log = logging.getLogger("mlops_assets.serving")


@dataclass(frozen=True)
class ServiceConfig:
    model_dir: Path
    keys_file: Path | None
    env_keys: tuple[str, ...]
    log_storage_url: str
    spill_dir: Path
    max_body_bytes: int = 1_048_576
    max_rows: int = 10_000
    max_log_backlog: int = 200_000
    flush_seconds: float = 1.0
    poll_seconds: float = 1.0
    deployment_id: str | None = None  # lets a deployer tell its own process from another on the port
    drain_seconds: float = 5.0  # longest SIGTERM drain before uvicorn's shutdown (0: none)
    telemetry_connection_string: str | None = None  # Application Insights; None: no telemetry at all
    # Telemetry the ingestion endpoint did not take waits here for a retry (the exporter's default
    # is a new folder in the machine's temp directory per instrumentation key, never cleaned).
    telemetry_retry_dir: Path | None = None
    log_storage_options: tuple[tuple[str, object], ...] = ()  # credentials for an az:// log root
    spec_path: Path | None = None  # serving-spec.json from the release's code; None: numbers only


REFUSED_RETRY_SECONDS = 10.0


def _release_signature(folder: Path) -> tuple:
    """Changes when a deployer points the model folder somewhere new or rewrites the manifest."""
    try:
        manifest = next(folder.rglob(MANIFEST_NAME)).stat()
        return (folder, manifest.st_mtime_ns, manifest.st_size)
    except (StopIteration, OSError):
        return (folder, None, None)


class ServiceState:
    """What one service process keeps between requests: the verified model (one immutable object,
    rebound whole on a swap), the bearer keys (re-read when their file changes), the request-log
    writer, the metrics tally, the drain and the OpenAPI document. Its lifespan loads the model,
    watches for a new release and closes the log; ``handler.ScoreHandler`` reads it per request."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.model: LoadedModel | None = None
        self._signature: tuple | None = None  # of the release loaded: stored only once it loaded
        self._refused: tuple[tuple | None, float] = (None, 0.0)  # a refused signature, when to retry
        self._keys: tuple[bytes, ...] = ()
        self._keys_mtime: int | None = None
        self.writer = RequestLogWriter(
            Storage(config.log_storage_url, **dict(config.log_storage_options)),
            config.spill_dir,
            config.flush_seconds,
        )
        self.openapi = b"{}"
        self.spec: ServingSpec | None = None
        self.tally = metrics.RequestTally()
        self.drain = Drain()

    # --- keys: re-read when the file changes, so a key can be added, then the old one removed ---
    def refresh_keys(self) -> None:
        keys_file = self.config.keys_file
        mtime = keys_file.stat().st_mtime_ns if keys_file and keys_file.exists() else None
        if self._keys and mtime == self._keys_mtime:
            return
        file_keys = read_keys(keys_file) if mtime is not None else ()
        self._keys = tuple(k.encode() for k in (*self.config.env_keys, *file_keys))
        self._keys_mtime = mtime
        if not self._keys:
            log.error("no scoring keys configured: every /score request will get 401")

    def authorized(self, header: bytes | None) -> bool:
        scheme, _, token = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer":  # auth schemes are case-insensitive (RFC 9110)
            return False
        presented = token.strip()
        match = False
        for key in self._keys:  # no early exit: the time taken does not tell which key is close
            match |= hmac.compare_digest(presented, key)
        return match

    # --- the model ---
    def load(self) -> None:
        # Resolve the symlink once: the signature and the files loaded must be the same release.
        folder = Path(os.path.realpath(self.config.model_dir))
        signature = _release_signature(folder)
        if signature == self._signature:
            return
        failed_at, retry_at = self._refused
        if signature == failed_at and time.monotonic() < retry_at:
            return
        try:
            if self.config.spec_path is not None and self.spec is None:
                self.spec = ServingSpec.load(self.config.spec_path)  # the code's: read once
            loaded = load_release(folder, self.spec)
        except Exception as exc:  # refuse and keep serving whatever was verified before
            metrics.MODEL_LOAD_FAILURES.inc()
            kept = f"keeping version {self.model.version}" if self.model else "not ready"
            # Tried again later (a deployer may still be copying the artifact), not at every poll.
            self._refused = (signature, time.monotonic() + REFUSED_RETRY_SECONDS)
            log.error("model refused (%s); %s; trying again in %.0f s", exc, kept, REFUSED_RETRY_SECONDS)
            return
        self._signature, self._refused = signature, (None, 0.0)
        previous, self.model = self.model, loaded  # one rebinding: requests see old or new, whole
        if previous is not None:
            metrics.MODEL_INFO.labels(previous.name, previous.version, previous.answered_by).set(0)
        metrics.MODEL_INFO.labels(loaded.name, loaded.version, loaded.answered_by).set(1)
        self.openapi = orjson.dumps(openapi_document(loaded.serving_spec, self.config.max_rows))
        log.info("serving %s version %s (answered by %s)", loaded.name, loaded.version, loaded.answered_by)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await asyncio.to_thread(self.refresh_keys)
                await asyncio.to_thread(self.load)
                self.tally.flush()
                self.publish_log_state()
            except Exception:  # the watcher must outlive any single failure
                log.exception("model/key watcher failed; retrying")

    def publish_log_state(self) -> None:
        metrics.LOG_BACKLOG.set(self.writer.backlog)
        metrics.LOG_SPILLED.set(self.writer.spilled)
        metrics.LOG_STUCK.set(1 if self.writer.stuck else 0)
        metrics.LOG_FAILURES.set(self.writer.failures)
        metrics.LOG_REFUSED.set(self.writer.refused)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: object) -> AsyncIterator[None]:
        self.refresh_keys()
        self.drain.install(self.config.drain_seconds)
        self.writer.start()
        await asyncio.to_thread(self.load)
        watcher = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            watcher.cancel()
            self.tally.flush()
            # graceful shutdown: nothing pending is lost
            await asyncio.to_thread(self.writer.close, SERVICE_LOG_CLOSE_SECONDS)
            log.info("request log closed: %d written, %d spilled", self.writer.written, self.writer.spilled)
