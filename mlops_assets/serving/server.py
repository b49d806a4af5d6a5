"""`mlops-assets serve`: uvicorn workers running the scoring app, configured through the environment."""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mlops_assets.settings import SERVICE_GRACEFUL_SECONDS, get_settings


class JsonFormatter(logging.Formatter):
    """One JSON object a line, every field escaped: a header or a path a client sent cannot
    forge a field or a line of the log (a format string would paste it in raw)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


# Applied by uvicorn in the parent and in every worker process (workers are spawned, not forked).
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mlops_assets.serving.server.JsonFormatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}


def serve(
    model_dir: Path,
    host: str,
    port: int,
    workers: int,
    limit_concurrency: int,
    listen_fd: int | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; each worker drains, then flushes its request log on the way out.

    ``listen_fd``: accept on this inherited listening socket (the supervisor's, see
    ``hosting/supervisor.py``) instead of binding ``host:port``.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mlops_assets.hosting.listener import bind_listener, inherited_listener
    from mlops_assets.serving.protocol import BoundedHttpToolsProtocol

    # Workers import the app afresh: they read their configuration from the environment.
    os.environ["MLOPS_SERVE_MODEL_DIR"] = str(
        model_dir.absolute()
    )  # not resolve(): a symlink is how releases swap
    sock = bind_listener(host, port) if listen_fd is None else inherited_listener(listen_fd)
    multiproc_dir = None
    if workers > 1:
        multiproc_dir = tempfile.mkdtemp(prefix="mlops-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
        # The workers share one listening socket, and libuv accepts every pending connection in
        # a loop: a burst of new clients could all land on one worker while the other idles
        # (seen here: 64 of 64, p99 1.6 s). One accept per wake-up lets the others take their turn.
        os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    get_settings.cache_clear()  # a single worker runs in this process: it must see the above too
    config = uvicorn.Config(
        "mlops_assets.serving.app:app_from_settings",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,  # httptools, with the request head bounded
        access_log=False,
        limit_concurrency=limit_concurrency,  # beyond it uvicorn answers 503 instead of queueing
        timeout_graceful_shutdown=SERVICE_GRACEFUL_SECONDS,
        log_config=LOGGING_CONFIG,
    )
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            if not server.started:
                raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: the app did not start
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
