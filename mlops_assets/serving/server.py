"""`mlops-assets serve`: uvicorn workers running the scoring app, configured through the environment."""

import os
import shutil
import tempfile
from pathlib import Path

from mlops_assets.settings import get_settings

# Applied by uvicorn in the parent and in every worker process (workers are spawned, not forked).
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "format": '{"time":"%(asctime)s","level":"%(levelname)s","pid":%(process)d,'
            '"logger":"%(name)s","message":"%(message)s"}'
        }
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}


def serve(model_dir: Path, host: str, port: int, workers: int, limit_concurrency: int) -> None:
    """Run until SIGTERM/SIGINT; each worker flushes its request log on the way out."""
    import uvicorn

    # Workers import the app afresh: they read their configuration from the environment.
    os.environ["MLOPS_SERVE_MODEL_DIR"] = str(
        model_dir.absolute()
    )  # not resolve(): a symlink is how releases swap
    multiproc_dir = None
    if workers > 1:
        multiproc_dir = tempfile.mkdtemp(prefix="mlops-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    get_settings.cache_clear()  # a single worker runs in this process: it must see the above too
    try:
        uvicorn.run(
            "mlops_assets.serving.app:app_from_settings",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            limit_concurrency=limit_concurrency,  # beyond it uvicorn answers 503 instead of queueing
            timeout_graceful_shutdown=30,
            log_config=LOGGING_CONFIG,
        )
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
