"""The scoring service's ASGI app: Azure ML's request/response contract on a lean Starlette app.

POST /score goes straight to ``handler.ScoreHandler`` (plain ASGI; most requests never reach the
app: the server's protocol answers them through the same handler, ``protocol.py``); every other
route (health, metrics, OpenAPI, 404/405, lifespan) is Starlette's, reading the process's
``state.ServiceState``.
"""

import os
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops_assets.model.rows import packaged_spec_path
from mlops_assets.serving import metrics
from mlops_assets.serving.drain import CloseWhileDraining
from mlops_assets.serving.handler import ScoreHandler, send_error
from mlops_assets.serving.state import ServiceConfig, ServiceState
from mlops_assets.storage.fsstore import credential_options

JSON = "application/json"


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


class StatusRoutes:
    """GET /health/live, /health/ready, /metrics and /openapi.json, answered from the state."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        # The deployment's id lets its supervisor's liveness probe tell its own service from a
        # predecessor that shares the socket during a handover.
        self._live = orjson.dumps({"status": "live", "deployment": state.config.deployment_id or None})

    async def live(self, _: Request) -> Response:
        return Response(self._live, media_type=JSON)

    async def ready(self, _: Request) -> Response:
        state = self.state
        model = state.model
        if state.drain.active:
            return Response(b'{"status":"draining"}', status_code=503, media_type=JSON)
        if model is None:
            return Response(
                b'{"status":"not ready","reason":"no verified model loaded"}',
                status_code=503,
                media_type=JSON,
            )
        if state.writer.stuck or not state.writer.alive:
            return Response(
                b'{"status":"not ready","reason":"the request log can keep no record (storage and spill folder failed)"}',
                status_code=503,
                media_type=JSON,
            )
        body = {"status": "ready", "model": model.name, "version": model.version}
        if state.config.deployment_id:
            body["deployment"] = state.config.deployment_id
        return Response(orjson.dumps(body), media_type=JSON)

    async def metrics_endpoint(self, _: Request) -> Response:
        self.state.tally.flush()  # this worker's counts and log state are current; others' as of their last poll
        self.state.publish_log_state()
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(self, _: Request) -> Response:
        return Response(self.state.openapi, media_type=JSON)


class ScoringApp:
    """The service's ASGI app: POST /score goes straight to the handler, everything else (health,
    metrics, OpenAPI, 404/405, lifespan) through Starlette. Starlette's middleware stack, router,
    request and response objects were about a third of a 1-row request's time in the app."""

    def __init__(self, handler: ScoreHandler, starlette: Starlette) -> None:
        self.handler = handler
        self.starlette = starlette

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/score":
            await self.starlette(scope, receive, send)
        elif scope["method"] == "POST":
            await self.handler.score(scope, receive, send)
        else:
            await send_error(send, 405, "Method Not Allowed", os.urandom(16).hex(), (b"allow", b"POST"))


def create_app(config: ServiceConfig) -> CloseWhileDraining | Any:
    """The ASGI app: the scoring service, drained on SIGTERM, traced when telemetry is configured."""
    state = ServiceState(config)
    status = StatusRoutes(state)
    starlette = Starlette(
        routes=[
            Route("/health/live", status.live, methods=["GET"]),
            Route("/health/ready", status.ready, methods=["GET"]),
            Route("/metrics", status.metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", status.openapi, methods=["GET"]),
        ],
        lifespan=state.lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app = CloseWhileDraining(ScoringApp(ScoreHandler(state), starlette), drain=state.drain)
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
