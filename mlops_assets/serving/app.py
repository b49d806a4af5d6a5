"""The scoring service: Azure ML's request/response contract on a lean Starlette app.

Per /score request, on the event loop, as plain ASGI (no router, request or response objects):
bearer check, bounded body read, orjson parse, the spec's checks in vectorised passes, one
matrix product (the model's affine form, verified at load) or one ``predict_proba``, orjson
response with pre-encoded headers, a tally for the metrics (folded in bulk) and a log line
joined from the bytes already in hand. Everything slow (model loading, request-log
serialisation and I/O) runs in threads. Every other route is Starlette's.

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
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops_assets.model.loaded import LoadedModel, load_release, score_rows
from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.model.rows import PayloadError, ServingSpec, packaged_spec_path, rows_from_payload
from mlops_assets.serving import metrics
from mlops_assets.serving.drain import CloseWhileDraining, Drain
from mlops_assets.serving.keys import read_keys
from mlops_assets.serving.openapi import openapi_document
from mlops_assets.serving.request_log import RequestLogWriter, record_line
from mlops_assets.storage.fsstore import Storage, credential_options

log = logging.getLogger("mlops_assets.serving")
SYNTHETIC_HEADER = b"x-mlops-synthetic"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
JSON = "application/json"


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


def _release_signature(folder: Path) -> tuple:
    """Changes when a deployer points the model folder somewhere new or rewrites the manifest."""
    try:
        manifest = next(folder.rglob(MANIFEST_NAME)).stat()
        return (folder, manifest.st_mtime_ns, manifest.st_size)
    except (StopIteration, OSError):
        return (folder, None, None)


NON_FINITE = re.compile(rb"(?<![\w\"])-?(NaN|Infinity)(?![\w\"])")


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """404 and 405 in the service's own error shape, not Starlette's plain text."""
    request_id = os.urandom(16).hex()
    extra = {name.lower(): value for name, value in (exc.headers or {}).items() if name.lower() == "allow"}
    return _error(exc.status_code, exc.detail, request_id, **extra)


def _error(status: int, message: str, request_id: str, **headers: str) -> Response:
    body = orjson.dumps({"error": message, "request_id": request_id})
    return Response(
        body, status_code=status, media_type=JSON, headers={"x-request-id": request_id, **headers}
    )


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody is left to answer."""


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send, status: int, message: str, request_id: str, *headers: tuple[bytes, bytes]
) -> None:
    body = orjson.dumps({"error": message, "request_id": request_id})
    await _send(send, status, body, [(b"x-request-id", request_id.encode()), *headers])


class ScoringService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.model: LoadedModel | None = None
        self._signature: tuple | None = None
        self._keys: tuple[bytes, ...] = ()
        self._keys_mtime: int | None = None
        self.writer = RequestLogWriter(
            Storage(config.log_storage_url, **dict(config.log_storage_options)),
            config.spill_dir,
            config.flush_seconds,
        )
        self._openapi = b"{}"
        self.spec: ServingSpec | None = None
        self.tally = metrics.RequestTally()
        self.drain = Drain()

    # --- keys: re-read when the file changes, so a key can be added, then the old one removed ---
    def _refresh_keys(self) -> None:
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
    def _load(self) -> None:
        # Resolve the symlink once: the signature and the files loaded must be the same release.
        folder = Path(os.path.realpath(self.config.model_dir))
        signature = _release_signature(folder)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            if self.config.spec_path is not None and self.spec is None:
                self.spec = ServingSpec.load(self.config.spec_path)  # the code's: read once
            loaded = load_release(folder, self.spec)
        except Exception as exc:  # refuse and keep serving whatever was verified before
            metrics.MODEL_LOAD_FAILURES.inc()
            kept = f"keeping version {self.model.version}" if self.model else "not ready"
            log.error("model refused (%s); %s", exc, kept)
            return
        previous, self.model = self.model, loaded  # one rebinding: requests see old or new, whole
        if previous is not None:
            metrics.MODEL_INFO.labels(previous.name, previous.version).set(0)
        metrics.MODEL_INFO.labels(loaded.name, loaded.version).set(1)
        self._openapi = orjson.dumps(openapi_document(loaded.serving_spec, self.config.max_rows))
        log.info(
            "serving %s version %s (%s)",
            loaded.name,
            loaded.version,
            "affine fast path"
            if loaded.fast_path
            else "additive fast path"
            if loaded.additive
            else "the model",
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await asyncio.to_thread(self._refresh_keys)
                await asyncio.to_thread(self._load)
                self.tally.flush()
                self._publish_log_state()
            except Exception:  # the watcher must outlive any single failure
                log.exception("model/key watcher failed; retrying")

    def _publish_log_state(self) -> None:
        metrics.LOG_BACKLOG.set(self.writer.backlog)
        metrics.LOG_SPILLED.set(self.writer.spilled)
        metrics.LOG_STUCK.set(1 if self.writer.stuck else 0)
        metrics.LOG_FAILURES.set(self.writer.failures)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self._refresh_keys()
        self.drain.install(self.config.drain_seconds)
        self.writer.start()
        await asyncio.to_thread(self._load)
        watcher = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            watcher.cancel()
            self.tally.flush()
            await asyncio.to_thread(self.writer.close)  # graceful shutdown: nothing pending is lost
            log.info("request log closed: %d written, %d spilled", self.writer.written, self.writer.spilled)

    # --- endpoints ---
    async def score(self, scope: dict, receive, send) -> None:
        """POST /score as plain ASGI: the request's headers read in one pass, its body taken from
        the first message when it came whole, the answer sent with its headers pre-encoded."""
        started = time.perf_counter()
        request_id = os.urandom(16).hex()  # a third of uuid4's cost, the same 128 random bits
        authorization = declared = synthetic = traceparent = None
        for name, value in scope["headers"]:  # names arrive lower-cased; the first of each counts
            if name == b"authorization":
                authorization = authorization or value
            elif name == b"content-length":
                declared = declared or value
            elif name == b"traceparent":
                traceparent = traceparent or value
            elif name == SYNTHETIC_HEADER:
                synthetic = synthetic or value
        trace = traceparent.decode("latin-1") if traceparent else None
        status, rows_scored = "200", 0
        try:
            model = self.model
            refusal = self._refusal(authorization, model)
            if refusal is not None:
                status = str(refusal[0])
                await _send_error(send, *refusal[:2], request_id, *refusal[2:])
                return
            body = await self._read_body(declared, receive)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                # JSON has no NaN or Infinity, and 1e999 overflows: the value is wrong, not the syntax.
                if "infinity when parsed" in str(exc) or NON_FINITE.search(body):
                    raise PayloadError(
                        422, "values must be finite numbers: NaN and Infinity are not"
                    ) from None
                raise PayloadError(400, f"body is not valid JSON: {exc}") from None
            rows = rows_from_payload(payload, model.serving_spec, self.config.max_rows, body)
            out = orjson.dumps(score_rows(model, rows), option=orjson.OPT_SERIALIZE_NUMPY)
            self.writer.append(
                record_line(
                    request_id,
                    time.time(),
                    model.version,
                    body,
                    out,
                    (time.perf_counter() - started) * 1000,
                    synthetic is not None and synthetic.lower() in (b"1", b"true", b"yes"),
                    trace if trace and TRACEPARENT.match(trace) else None,
                    orjson.dumps(rows.flags) if rows.flags else b"",
                )
            )
            rows_scored = rows.count
            await _send(
                send,
                200,
                out,
                [(b"x-model-version", model.version_header), (b"x-request-id", request_id.encode())],
            )
        except PayloadError as exc:
            status = str(exc.status)
            log.info("rejected %s: %s (traceparent %s)", request_id, exc, trace)
            await _send_error(send, exc.status, str(exc), request_id)
        except ClientGone:
            status = "499"  # nginx's code for it: counted, never sent
        except Exception:
            status = "500"
            log.exception("request %s failed", request_id)
            await _send_error(send, 500, "the service failed to score this request", request_id)
        finally:
            self.tally.record(status, rows_scored, time.perf_counter() - started)

    def _refusal(self, authorization: bytes | None, model: LoadedModel | None) -> tuple | None:
        """Why the request is refused before its body is read: (status, message, *headers), or None."""
        if not self.authorized(authorization):
            return (401, "missing or invalid bearer key", (b"www-authenticate", b"Bearer"))
        if model is None:
            return (503, "no verified model loaded yet", (b"retry-after", b"1"))
        if self.writer.stuck:  # its record could be kept nowhere: shed before doing the work
            return (503, "the request log can keep no record now; retry shortly", (b"retry-after", b"5"))
        if self.writer.backlog > self.config.max_log_backlog:  # shed rather than lose log records
            return (503, "request log backlog is full; retry shortly", (b"retry-after", b"1"))
        return None

    async def _read_body(self, declared: bytes | None, receive) -> bytes:
        limit = self.config.max_body_bytes
        if declared is not None:
            if not declared.isdigit():
                raise PayloadError(400, "Content-Length is not a number")
            if int(declared) > limit:
                raise PayloadError(413, f"body of {declared.decode()} bytes is over the {limit}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if not message.get("more_body", False) and not chunks:
                if len(chunk) > limit:
                    raise PayloadError(413, f"body is over the {limit}-byte limit")
                return chunk  # the whole body in one message: the usual case
            size += len(chunk)
            if size > limit:
                raise PayloadError(413, f"body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def live(self, _: Request) -> Response:
        return Response(b'{"status":"live"}', media_type=JSON)

    async def ready(self, _: Request) -> Response:
        model = self.model
        if self.drain.active:
            return Response(b'{"status":"draining"}', status_code=503, media_type=JSON)
        if model is None:
            return Response(
                b'{"status":"not ready","reason":"no verified model loaded"}',
                status_code=503,
                media_type=JSON,
            )
        if self.writer.stuck or not self.writer.alive:
            return Response(
                b'{"status":"not ready","reason":"the request log can keep no record (storage and spill folder failed)"}',
                status_code=503,
                media_type=JSON,
            )
        body = {"status": "ready", "model": model.name, "version": model.version}
        if self.config.deployment_id:
            body["deployment"] = self.config.deployment_id
        return Response(orjson.dumps(body), media_type=JSON)

    async def metrics_endpoint(self, _: Request) -> Response:
        self.tally.flush()  # this worker's counts and log state are current; others' as of their last poll
        self._publish_log_state()
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(self, _: Request) -> Response:
        return Response(self._openapi, media_type=JSON)


class ScoringApp:
    """The service's ASGI app: POST /score goes straight to the service, everything else (health,
    metrics, OpenAPI, 404/405, lifespan) through Starlette. Starlette's middleware stack, router,
    request and response objects were about a third of a 1-row request's time in the app."""

    def __init__(self, service: ScoringService, starlette: Starlette) -> None:
        self.service = service
        self.starlette = starlette

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/score":
            await self.starlette(scope, receive, send)
        elif scope["method"] == "POST":
            await self.service.score(scope, receive, send)
        else:
            await _send_error(send, 405, "Method Not Allowed", os.urandom(16).hex(), (b"allow", b"POST"))


def create_app(config: ServiceConfig) -> CloseWhileDraining | Any:
    """The ASGI app: the scoring service, drained on SIGTERM, traced when telemetry is configured."""
    service = ScoringService(config)
    starlette = Starlette(
        routes=[
            Route("/health/live", service.live, methods=["GET"]),
            Route("/health/ready", service.ready, methods=["GET"]),
            Route("/metrics", service.metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", service.openapi, methods=["GET"]),
        ],
        lifespan=service.lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app = CloseWhileDraining(ScoringApp(service, starlette), drain=service.drain)
    if config.telemetry_connection_string:
        from mlops_assets.serving.telemetry import instrument

        return instrument(app, config.telemetry_connection_string, config.telemetry_retry_dir)
    return app


def config_from_settings() -> ServiceConfig:
    from mlops_assets.settings import get_settings

    settings = get_settings()  # reads settings.SERVICE_ENVIRONMENT: a deployment is given only those
    if settings.serve_model_dir is None:
        raise SystemExit(
            "MLOPS_SERVE_MODEL_DIR is not set: start the service with `mlops-assets serve --model-dir DIR`"
        )
    env_keys = settings.scoring_keys.get_secret_value() if settings.scoring_keys else ""
    return ServiceConfig(
        model_dir=settings.serve_model_dir,
        keys_file=settings.keys_file,
        env_keys=tuple(k.strip() for k in env_keys.split(",") if k.strip()),
        log_storage_url=settings.scoring_log_root,
        log_storage_options=_log_storage_options(settings),
        spill_dir=settings.scoring_spill,
        max_body_bytes=settings.scoring_max_body_bytes,
        max_rows=settings.scoring_max_rows,
        max_log_backlog=settings.scoring_log_max_backlog,
        flush_seconds=settings.scoring_log_flush_seconds,
        poll_seconds=settings.model_poll_seconds,
        deployment_id=settings.deployment_id,
        drain_seconds=settings.scoring_drain_seconds,
        spec_path=settings.serving_spec or packaged_spec_path(),
        telemetry_retry_dir=settings.spill_dir / "telemetry",
        telemetry_connection_string=(
            settings.applicationinsights_connection_string.get_secret_value()
            if settings.applicationinsights_connection_string
            else None
        ),
    )


def _log_storage_options(settings) -> tuple[tuple[str, object], ...]:
    if not settings.scoring_log_on_azure:
        return ()
    secret = settings.azure_storage_connection_string
    options = credential_options(
        secret.get_secret_value() if secret else None, settings.azure_storage_account
    )
    return tuple(options.items())


def app_from_settings() -> CloseWhileDraining | Any:
    """The uvicorn factory each worker calls: configuration comes through the environment."""
    return create_app(config_from_settings())
