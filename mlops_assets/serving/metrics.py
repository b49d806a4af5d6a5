"""Prometheus metrics of the scoring service, correct across uvicorn worker processes.

With several workers, ``mlops-assets serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh folder
before they start; prometheus_client then keeps values in shared files and ``/metrics`` in any
worker reports the sum over all of them.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _values

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter("scoring_requests", "Scoring requests by HTTP status code.", ["code"])
LATENCY = Histogram("scoring_request_latency_seconds", "Time spent in /score.", buckets=LATENCY_BUCKETS)
ROWS = Counter("scoring_rows", "Rows scored.")
MODEL_INFO = Gauge(
    "scoring_model_info",
    "The model version being served (1).",
    ["model_name", "version"],
    multiprocess_mode="liveall",
)
MODEL_LOAD_FAILURES = Counter("scoring_model_load_failures", "Models refused (sha256, types, unreadable).")
LOG_BACKLOG = Gauge(
    "scoring_log_backlog_records", "Request log records not yet written.", multiprocess_mode="livesum"
)
LOG_SPILLED = Gauge(
    "scoring_log_spilled_records",
    "Request log records on local disk awaiting storage.",
    multiprocess_mode="livesum",
)


def _multiprocess() -> bool:
    return _values.ValueClass is not _values.MutexValue


def render() -> tuple[bytes, str]:
    if _multiprocess():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
