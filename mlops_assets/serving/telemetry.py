"""Application Insights for the scoring service: OpenTelemetry request traces and metrics.

Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and imported only then: the Azure
Monitor distro and OpenTelemetry cost import time and memory in every worker and a middleware
on every request, so a service without the setting imports neither and pays nothing.
Live metrics and performance counters stay off (the first opens its own connection to Azure
outside the connection string's ingestion endpoint); statsbeat and the cloud resource detectors
are switched off by ``mlops_assets.settings`` before anything imports them.
"""

from typing import Any

# Probes and scrapes are not traffic anyone wants as requests in Application Insights.
NOT_TRACED = "health/live,health/ready,metrics"


# The distro instruments these client libraries by default. The service makes no such calls
# worth tracing, and the exporter's own HTTP calls would come back as telemetry about telemetry.
NOT_INSTRUMENTED = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")
# Each export logs its request and outcome at INFO: kept out of the service's log and of App Insights.
CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.monitor.opentelemetry.exporter")


def instrument(app: Any, connection_string: str, service_name: str = "mlops-scoring") -> None:
    import logging

    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
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
    )
    # One span per request: the per-message receive/send spans would each become a "dependency".
    app.add_middleware(OpenTelemetryMiddleware, excluded_urls=NOT_TRACED, exclude_spans=["receive", "send"])
