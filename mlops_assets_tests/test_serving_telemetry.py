"""Scoring telemetry to Application Insights, against an ingestion endpoint on 127.0.0.1; and none
at all -- not even an import -- when it is not configured."""

import json
import subprocess
import sys
import time

import httpx

from mlops_assets_tests.serving_support import SAMPLE, Service, write_release
from mlops_assets_tests.webhook import TelemetryReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _eventually(condition, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def test_requests_are_traced_and_measured_in_application_insights(tmp_path):
    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    with TelemetryReceiver() as insights:
        service = Service(
            home,
            home / "release",
            env={
                "APPLICATIONINSIGHTS_CONNECTION_STRING": insights.connection_string,
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s, metrics every 0.5 s
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                # The distro samples 5 traces/s by default (metrics are never sampled): keep all six.
                "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
                "OTEL_TRACES_SAMPLER_ARG": "1.0",
            },
        ).wait_live()
        try:
            service.wait_version("1")
            headers = {"authorization": "Bearer key-one", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
            for _ in range(5):
                assert httpx.post(f"{service.url}/score", json=SAMPLE, headers=headers).status_code == 200
            assert httpx.post(f"{service.url}/score", json=SAMPLE).status_code == 401

            scored = _eventually(
                lambda: [
                    r
                    for r in insights.of_type("RequestData")
                    if r["data"]["baseData"]["name"] == "POST /score"
                ]
            )
            _eventually(lambda: len(insights.of_type("RequestData")) >= 6)
            codes = sorted(r["data"]["baseData"]["responseCode"] for r in insights.of_type("RequestData"))
            assert codes == ["200"] * 5 + ["401"]
            assert scored[0]["tags"]["ai.operation.id"] == TRACE_ID  # the caller's trace continues here
            assert scored[0]["tags"]["ai.cloud.role"] == "mlops-scoring"

            # An observable counter is exported as deltas: the five may straddle two exports.
            def scored_200() -> float:
                return sum(
                    m["data"]["baseData"]["metrics"][0]["value"]
                    for m in insights.of_type("MetricData")
                    if m["data"]["baseData"]["metrics"][0]["name"] == "scoring.requests"
                    and m["data"]["baseData"]["properties"].get("code") == "200"
                )

            _eventually(lambda: scored_200() >= 5)
            assert scored_200() == 5  # the five scored (the 401 has its own code)
            names = {r["data"]["baseData"]["name"] for r in insights.of_type("RequestData")}
            assert not any("health" in n or "metrics" in n for n in names)  # probes are not requests
        finally:
            service.stop()
    # Nothing went anywhere but the receiver: the service's only peers were 127.0.0.1.
    sent = json.dumps(insights.envelopes)
    assert "key-one" not in sent
    # Telemetry waiting for a retry is kept in the service's spill folder, not the machine's temp.
    assert (home / "spill" / "telemetry").is_dir()


def test_without_a_connection_string_nothing_of_it_is_imported(tmp_path):
    write_release(tmp_path / "release", version=1)
    probe = f"""
import sys
from pathlib import Path
from mlops_assets.serving.app import create_app
from mlops_assets.serving.state import ServiceConfig
create_app(ServiceConfig(model_dir=Path({str(tmp_path / "release")!r}), keys_file=None, env_keys=("k",),
                         log_storage_url={(tmp_path / "logs").as_uri()!r}, spill_dir=Path({str(tmp_path / "spill")!r})))
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor"))))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_request_log_goes_to_blob_storage_with_the_services_own_credentials(tmp_path, azurite):
    """On AKS the service writes scoring-logs/ to az:// as its workload identity; here, Azurite."""
    import uuid

    from azure.storage.blob import BlobServiceClient

    container = f"logs-{uuid.uuid4().hex[:12]}"
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(container)
    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    service = Service(
        home,
        home / "release",
        env={
            "MLOPS_SCORING_LOG_URL": f"az://{container}",
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,  # adlfs' own variable
        },
    ).wait_live()
    try:
        service.wait_version("1")
        ids = {service.score().headers["x-request-id"] for _ in range(5)}
    finally:
        service.stop()
    assert "5 written, 0 spilled" in service.log()
    lines = [
        json.loads(line)
        for blob in blobs.get_container_client(container).list_blobs(name_starts_with="scoring-logs/date=")
        for line in blobs.get_blob_client(container, blob.name).download_blob().readall().splitlines()
    ]
    assert {r["request_id"] for r in lines} == ids
