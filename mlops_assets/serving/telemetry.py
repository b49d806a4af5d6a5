"""Application Insights for the scoring service: OpenTelemetry request traces and metrics.

Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and imported only then: the Azure
Monitor distro and OpenTelemetry cost import time and memory in every worker, so a service
without the setting imports neither and pays nothing.

Requests are traced by ``RequestTelemetry``, a few lines of ASGI, not by
``opentelemetry-instrumentation-asgi``: measured here (bench/scoring.py, 1-row requests) the
library's middleware took the service from ~18,000 to ~6,000 req/s (about 90 us of attribute
collection and metric recording per request, microbench in the issue note); this one records
the span and one duration histogram the exporter needs. Live metrics and performance counters
stay off (live metrics opens its own connection outside the ingestion endpoint); statsbeat and
the cloud resource detectors are switched off by ``mlops_assets.settings`` before anything
imports them.
"""

from pathlib import Path
from typing import Any

# Probes and scrapes are not traffic anyone wants as requests in Application Insights.
NOT_TRACED = frozenset({"/health/live", "/health/ready", "/metrics"})
# The distro instruments these client libraries by default. The service makes no such calls
# worth tracing, and the exporter's own HTTP calls would come back as telemetry about telemetry.
NOT_INSTRUMENTED = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)
# Each export logs its request and outcome at INFO: kept out of the service's log and of App Insights.
CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.monitor.opentelemetry.exporter")


def instrument(
    app: Any, connection_string: str, retry_dir: Path | None = None, service_name: str = "mlops-scoring"
) -> "RequestTelemetry":
    """``app`` traced: every request but probes and scrapes gets a span (and the distro is set up).
    ``retry_dir``: where telemetry the endpoint did not take waits to be sent again."""
    import logging

    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    configure_azure_monitor(
        connection_string=connection_string,
        resource=Resource.create({"service.name": service_name}),
        logger_name="mlops_assets.serving",  # the service's own log lines become traces, nothing else
        instrumentation_options={name: {"enabled": False} for name in NOT_INSTRUMENTED},
        enable_live_metrics=False,
        enable_performance_counters=False,
        **({"storage_directory": str(retry_dir)} if retry_dir else {}),
    )
    _observe_counts()
    return RequestTelemetry(app)


def _observe_counts() -> None:
    """Requests by status code and rows, as OpenTelemetry counters read from the Prometheus ones
    at each export: nothing more per request than /metrics already costs."""
    from opentelemetry import metrics
    from opentelemetry.metrics import Observation

    from mlops_assets.serving.metrics import REQUESTS, ROWS

    def totals(metric: Any, label: str | None) -> list[Any]:
        return [
            Observation(sample.value, {label: sample.labels[label]} if label else {})
            for family in metric.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        ]

    meter = metrics.get_meter("mlops_assets.serving")
    meter.create_observable_counter(
        "scoring.requests",
        callbacks=[lambda _: totals(REQUESTS, "code")],
        description="Scoring requests by HTTP status code.",
    )
    meter.create_observable_counter(
        "scoring.rows", callbacks=[lambda _: totals(ROWS, None)], description="Rows scored."
    )


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class RequestTelemetry:
    """One SERVER span per request, continuing the caller's ``traceparent``.

    Application Insights derives its request count and duration metrics from these spans.
    """

    def __init__(self, app: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self.trace = trace
        self.tracer = trace.get_tracer("mlops_assets.serving")
        self.propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in NOT_TRACED:
            await self.app(scope, receive, send)
            return
        method, route = scope["method"], scope["path"]
        carrier = {}
        for name in (b"traceparent", b"tracestate"):
            value = _header(scope, name)
            if value is not None:
                carrier[name.decode()] = value
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=self.propagator.extract(carrier) if carrier else None,
            kind=self.trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": route, "url.scheme": scope["scheme"]},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                if span.is_recording():
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(self.trace.StatusCode.ERROR)
