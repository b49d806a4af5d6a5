"""Prometheus metrics of the scoring service, correct across uvicorn worker processes.

With several workers, ``mlops-assets serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh folder
before they start; prometheus_client then keeps values in shared files and ``/metrics`` in any
worker reports the sum over all of them.
"""

import os
import re
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _values

# prometheus_client's file of one process's gauges in a live* mode: gauge_live<mode>_<pid>.db
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter("scoring_requests", "Scoring requests by HTTP status code.", ["code"])
LATENCY = Histogram("scoring_request_latency_seconds", "Time spent in /score.", buckets=LATENCY_BUCKETS)
ROWS = Counter("scoring_rows", "Rows scored.")
MODEL_INFO = Gauge(
    "scoring_model_info",
    "The model version being served (1), and what answers for it (the model, its compiled graph, a "
    "reading of it proven equal).",
    ["model_name", "version", "answered_by"],
    multiprocess_mode="liveall",
)
MODEL_LOAD_FAILURES = Counter("scoring_model_load_failures", "Models refused (sha256, types, unreadable).")
LOG_BACKLOG = Gauge(
    "scoring_log_backlog_records", "Request log records not yet written.", multiprocess_mode="livesum"
)
LOG_SPILLED = Gauge(
    "scoring_log_spilled_records",
    "Request log records on local disk awaiting storage.",
    multiprocess_mode="livemax",  # the workers share the spill folder: each sees all of it
)
LOG_STUCK = Gauge(
    "scoring_log_stuck",
    "1 while a worker can keep request log records nowhere (storage and spill folder failed): it sheds.",
    multiprocess_mode="livemax",
)
LOG_REFUSED = Gauge(
    "scoring_log_refused_files",
    "Files found in the spill folder that are not this service's request log records (another "
    "path, owner or content): set aside under refused/, never delivered, since the worker started.",
    multiprocess_mode="livesum",
)
LOG_FAILURES = Gauge(
    "scoring_log_write_failures",
    "Flushes whose batch could be kept nowhere (retried with backoff), since the worker started.",
    multiprocess_mode="livesum",
)


class RequestTally:
    """Per-request counts kept in plain Python and folded into the Prometheus metrics in bulk.

    An update of a prometheus_client value costs ~1.5 us in multiprocess mode (a locked write to a
    shared file); three per request were a sixth of our per-request CPU. Here a request costs a
    dict increment and a bisect; ``flush()`` (every poll interval and before /metrics answers)
    writes the totals with one update per metric and bucket.
    """

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.rows = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def record(self, code: str, rows: int, latency: float) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        self.rows += rows
        self.latency_counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.latency_sum += latency

    def flush(self) -> None:
        codes, self.codes = self.codes, {}
        rows, self.rows = self.rows, 0
        counts, self.latency_counts = self.latency_counts, [0] * (len(LATENCY_BUCKETS) + 1)
        latency_sum, self.latency_sum = self.latency_sum, 0.0
        for code, count in codes.items():
            REQUESTS.labels(code).inc(count)
        if rows:
            ROWS.inc(rows)
        # prometheus_client has no bulk observe(); its per-bucket values are the documented storage
        # of a Histogram (non-cumulative counts, summed at exposition), so add to them directly.
        for index, count in enumerate(counts):
            if count:
                LATENCY._buckets[index].inc(count)
        if latency_sum:
            LATENCY._sum.inc(latency_sum)


def _multiprocess() -> bool:
    return _values.ValueClass is not _values.MutexValue


def _forget_dead_workers(folder: str) -> None:
    """A worker that died (and was restarted) leaves its gauges' files: its last ``scoring_log_stuck``
    would count forever. Its counters stay (totals lose nothing); its live gauges go."""
    from prometheus_client import multiprocess

    pids = {int(m.group(1)) for name in os.listdir(folder) if (m := _LIVE_GAUGE_FILE.match(name))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)
        except PermissionError:
            continue


def render() -> tuple[bytes, str]:
    if _multiprocess():
        from prometheus_client import multiprocess

        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            _forget_dead_workers(folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
