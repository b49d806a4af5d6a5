"""The scoring service as a real process on 127.0.0.1: contract, auth, bad input, swap, request log."""

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis

from mlops_assets.hosting.state import point_link
from mlops_assets.serving.keys import read_keys
from mlops_assets_tests.serving_support import (
    SAMPLE,
    Service,
    logged_records,
    predictions,
    write_release,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve") / "mlops"
    model = write_release(home / "releases" / "1", version=1)
    service = Service(home, home / "releases" / "1").wait_live()
    service.wait_version("1")
    yield service, model
    service.stop()


def test_scores_the_seed_payload_with_the_model_s_own_predictions(served):
    service, model = served
    response = service.score(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert response.status_code == 200
    assert response.json()["result"] == pytest.approx(predictions(model), rel=1e-12)
    assert response.headers["x-model-version"] == "1"
    assert len(response.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("wrong", 401), ("key-one", 200), ("key-one-and-more", 401), ("key-on", 401)],
)
def test_only_a_configured_key_scores(served, key, status):
    service, _ = served
    response = service.score(key=key)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"] == "missing or invalid bearer key"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("header", "status"),
    [("key-one", 401), ("Basic key-one", 401), ("bearer key-one", 200), ("Bearer  key-one", 200)],
)
def test_the_key_only_counts_as_a_bearer_token(served, header, status):
    service, _ = served
    response = httpx.post(f"{service.url}/score", json=SAMPLE, headers={"Authorization": header})
    assert response.status_code == status


def test_health_metrics_and_openapi_need_no_key(served):
    service, _ = served
    assert httpx.get(f"{service.url}/health/live").status_code == 200
    ready = httpx.get(f"{service.url}/health/ready")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "model": "diabetes",
        "version": "1",
    }
    document = httpx.get(f"{service.url}/openapi.json").json()
    row = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]["data"]["items"]["oneOf"][0]
    assert row["minItems"] == row["maxItems"] == 10


BAD_REQUESTS = [
    (b"not json", 400, "body is not valid JSON"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,NaN]]}', 422, "values must be finite numbers"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,-Infinity]]}', 422, "values must be finite numbers"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,1e999]]}', 422, "a number is too large: beyond a 64-bit float"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,1' + b"0" * 400 + b"]]}", 422, "a number is too large"),
    (
        b'{"data": [{"age": 1, "age": 2, "sex": 1, "bmi": 1, "bp": 1, "s1": 1, "s2": 1, "s3": 1, '
        b'"s4": 1, "s5": 1, "s6": 1}]}',
        422,
        "key 'age' appears twice in one object",
    ),
    (
        b'{"data": [[1,2,3,4,5,6,7,8,9,10]], "data": [[1,2,3,4,5,6,7,8,9,10]]}',
        422,
        "key 'data' appears twice",
    ),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,NaNa]]}', 400, "body is not valid JSON"),
    (b"[]", 422, 'body must be a JSON object {"data"'),
    (b'{"rows": []}', 422, 'body must be a JSON object {"data"'),
    (b'{"data": {}}', 422, '"data" must be a list of rows, got dict'),
    (b'{"data": []}', 422, '"data" is empty'),
    (b'{"data": [1,2,3]}', 422, "row 0 is a int; a row is a list of values or an object by feature name"),
    (b'{"data": [[1,2,3]]}', 422, "row 0 has 3 values; the model expects 10 (age, sex"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,10],[1,2]]}', 422, "row 1 has 2 values"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,"10"]]}', 422, "row 0, feature s6: '10' is not a number"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,true]]}', 422, "row 0, feature s6: True is not a number"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,null]]}', 422, "row 0, feature s6: None is not a number"),
    (b'{"data": [[1,2,3,4,5,6,7,8,9,[1]]]}', 422, "is not a number"),
    (
        b'{"data": [[1,2,3,4,5,6,7,8,9,1e300]]}',
        422,
        "row 0, feature s6: 1e+300 is outside a number in [-1e+09, 1e+09]",
    ),
    (json.dumps({"data": [[1] * 10] * 10_001}).encode(), 413, "at most 10000 per request"),
    (b'{"data": [[' + b"1," * 600_000 + b"1]]}", 413, "over the 1048576-byte limit"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), BAD_REQUESTS, ids=lambda v: str(v)[:40] if isinstance(v, bytes) else None
)
def test_bad_input_gets_a_4xx_naming_the_problem(served, body, status, message):
    service, _ = served
    response = httpx.post(
        f"{service.url}/score",
        content=body,
        headers={"Authorization": "Bearer key-one", "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_chunked_body_over_the_limit_is_refused(served):
    service, _ = served

    def chunks():
        yield b'{"data": [['
        for _ in range(300):
            yield b"1," * 2000
        yield b"1]]}"

    response = httpx.post(
        f"{service.url}/score", content=chunks(), headers={"Authorization": "Bearer key-one"}
    )
    assert response.status_code == 413 and "over the 1048576-byte limit" in response.json()["error"]


def test_metrics_count_requests_by_code_rows_and_latency(served):
    service, _ = served
    service.score()
    service.score(key="wrong")
    text = httpx.get(f"{service.url}/metrics").text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['scoring_requests_total{code="200"}'] >= 1
    assert values['scoring_requests_total{code="401"}'] >= 1
    assert values["scoring_rows_total"] >= 2
    assert values["scoring_request_latency_seconds_count"] >= 2
    info = {k: v for k, v in values.items() if k.startswith("scoring_model_info{")}
    assert info == {'scoring_model_info{answered_by="affine map",model_name="diabetes",version="1"}': 1}


@pytest.mark.parametrize("path", ["/score", "/health/live", "/health/ready", "/metrics"])
def test_fuzzed_requests_never_get_a_5xx_and_match_the_schema(served, path):
    service, _ = served
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operation = next(op for op in operations if op.path == path)

    @hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy())
    def fuzz(case):
        case.call_and_validate(headers={"Authorization": "Bearer key-one"})

    fuzz()


def test_a_key_is_rotated_without_a_restart(tmp_path):
    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    keys = home / "keys"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text("old-key\n")
    service = Service(
        home, home / "release", env={"MLOPS_SCORING_KEYS": "", "MLOPS_SCORING_KEYS_FILE": str(keys)}
    ).wait_live()
    try:
        service.wait_version("1")
        assert service.score(key="old-key").status_code == 200
        keys.write_text("old-key\nnew-key\n")  # both valid while clients move over
        _eventually(lambda: service.score(key="new-key").status_code == 200)
        assert service.score(key="old-key").status_code == 200
        keys.write_text("new-key\n")
        _eventually(lambda: service.score(key="old-key").status_code == 401)
        assert service.score(key="new-key").status_code == 200
        assert "old-key" not in service.log() and "new-key" not in service.log()
        assert read_keys(keys) == ("new-key",)
    finally:
        service.stop()


def _eventually(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _versions_by_worker(service: Service) -> dict[str, str]:
    """Per-worker model info from /metrics (multiprocess: one sample per live worker pid)."""
    text = httpx.get(f"{service.url}/metrics").text
    samples = [
        line for line in text.splitlines() if line.startswith("scoring_model_info{") and line.endswith(" 1.0")
    ]
    return {
        line.split('pid="')[1].split('"')[0]: line.split('version="')[1].split('"')[0] for line in samples
    }


def _versions_served(service: Service) -> set[str]:
    return set(_versions_by_worker(service).values())


def test_models_swap_under_load_without_a_failed_request(tmp_path):
    home = tmp_path / "mlops"
    model_one = write_release(home / "releases" / "1", version=1, alpha=0.5)
    model_two = write_release(home / "releases" / "2", version=2, alpha=50.0)
    write_release(home / "releases" / "3", version=3, tamper=True)
    current = home / "current"
    point_link(current, home / "releases" / "1")
    service = Service(home, current, workers=2).wait_live()
    expected = {"1": predictions(model_one), "2": predictions(model_two)}
    assert expected["1"] != pytest.approx(expected["2"])
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                response = client.post(
                    f"{service.url}/score", json=SAMPLE, headers={"Authorization": "Bearer key-one"}
                )
                if response.status_code != 200:
                    failures.append(response.status_code)
                    continue
                version = response.headers["x-model-version"]
                if response.json()["result"] != pytest.approx(expected[version], rel=1e-12):
                    failures.append(f"version {version} answered with other numbers")
                seen.append(version)

    try:
        service.wait_version("1")
        # Both workers up on version 1 first: a worker still starting could miss release 2 entirely.
        _eventually(lambda: list(_versions_by_worker(service).values()) == ["1", "1"], timeout=30)
        for pid in _versions_by_worker(service):  # one accept per wake-up: bursts reach both workers
            assert b"UV_TCP_SINGLE_ACCEPT=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        _eventually(lambda: "1" in seen, timeout=30)  # the hammers are scoring version 1
        point_link(current, home / "releases" / "2")
        _eventually(lambda: seen[-20:] == ["2"] * 20 and len(seen) > 40, timeout=30)
        _eventually(lambda: _versions_served(service) == {"2"}, timeout=30)  # every worker moved
        point_link(current, home / "releases" / "3")  # sha256 mismatch: refused, version 2 stays
        service.wait_logged("does not match")
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert "1" in seen and seen[-1] == "2"
        assert httpx.get(f"{service.url}/health/ready").json()["version"] == "2"
        assert "model refused" in service.log() and "does not match" in service.log()
    finally:
        stop.set()
        service.stop()


def test_a_release_that_fails_verification_is_never_served(tmp_path):
    home = tmp_path / "mlops"
    write_release(home / "release", version=1, tamper=True)
    service = Service(home, home / "release").wait_live()
    try:
        service.wait_logged("model refused")  # its first look at the release, refused
        ready = httpx.get(f"{service.url}/health/ready")
        assert ready.status_code == 503 and "no verified model" in ready.json()["reason"]
        refused = service.score()
        assert refused.status_code == 503 and "no verified model loaded" in refused.json()["error"]
        write_release(home / "release", version=1)  # the real artifact arrives
        service.wait_version("1")
        assert service.score().status_code == 200
    finally:
        service.stop()


def test_sigterm_flushes_every_record_and_marks_synthetic_traffic(tmp_path):
    home = tmp_path / "mlops"
    model = write_release(home / "release", version=1)
    service = Service(home, home / "release", env={"MLOPS_SCORING_LOG_FLUSH_SECONDS": "3600"}).wait_live()
    service.wait_version("1")
    ids = {service.score().headers["x-request-id"] for _ in range(25)}
    synthetic = service.score(
        **{"x-mlops-synthetic": "true", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    assert service.score(key="wrong").status_code == 401  # not scored, not logged
    # uvicorn re-raises the signal once its graceful shutdown is done, so the parent sees why.
    assert service.stop() in (0, -signal.SIGTERM)
    assert "request log closed: 26 written, 0 spilled" in service.log()
    records = {r["request_id"]: r for r in logged_records(home / "storage")}
    assert set(records) == ids | {synthetic.headers["x-request-id"]}
    record = records[synthetic.headers["x-request-id"]]
    assert record["synthetic"] is True and record["traceparent"] == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert record["request"] == SAMPLE and record["model_version"] == "1"
    assert record["response"]["result"] == pytest.approx(predictions(model))
    assert not any(records[i]["synthetic"] for i in ids)


def test_scoring_goes_on_while_storage_fails_and_spilled_records_arrive_later(tmp_path):
    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    storage_root = tmp_path / "logs"
    storage_root.mkdir()
    blocker = storage_root / "scoring-logs"
    blocker.write_text("a file where the log folder should be: every write fails")
    service = Service(
        home, home / "release", env={"MLOPS_SCORING_LOG_URL": storage_root.as_uri()}
    ).wait_live()
    try:
        service.wait_version("1")
        ids = {service.score().headers["x-request-id"] for _ in range(30)}
        spill = home / "spill" / "scoring-logs"
        _eventually(lambda: sum(p.read_text().count("\n") for p in spill.rglob("*.jsonl")) == 30)
        assert "spilling" in service.log()
        blocker.unlink()  # storage comes back
        _eventually(lambda: {r["request_id"] for r in logged_records(storage_root)} == ids)
        _eventually(lambda: not list(spill.rglob("*.jsonl")))
        assert "delivered" in service.log()
    finally:
        service.stop()


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_overload_sheds_with_503_stays_up_and_logs_every_2xx(tmp_path):
    """64 connections against a limit of 16 (uvicorn counts connections and tasks): 200 or 503, nothing lost."""
    import asyncio

    home = tmp_path / "mlops"
    write_release(home / "release", version=1)
    service = Service(home, home / "release", env={"MLOPS_SCORING_MAX_INFLIGHT": "16"}).wait_live()
    service.wait_version("1")
    rss_before = _rss_mb(service.process.pid)
    statuses: dict[int, int] = {}
    ok_ids: list[str] = []
    body = json.dumps({"data": [[50, 1, 25.0, 90, 180, 110, 50, 4, 4.5, 90]] * 100})

    async def client_loop(client: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                response = await client.post(
                    f"{service.url}/score", content=body, headers={"Authorization": "Bearer key-one"}
                )
            except httpx.TransportError:
                statuses[-1] = statuses.get(-1, 0) + 1  # a shed connection closed by the server
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                ok_ids.append(response.headers["x-request-id"])

    async def load() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            deadline = time.monotonic() + 4
            await asyncio.gather(*(client_loop(client, deadline) for _ in range(64)))

    try:
        asyncio.run(load())
        assert statuses.get(200, 0) > 100 and statuses.get(503, 0) > 0, statuses
        assert set(statuses) <= {200, 503, -1}, statuses
        assert httpx.get(f"{service.url}/health/live").status_code == 200
        assert service.score().status_code == 200
        assert _rss_mb(service.process.pid) < rss_before + 150
    finally:
        service.stop()
    logged = [r["request_id"] for r in logged_records(home / "storage")]
    assert set(ok_ids) <= set(logged)
    assert len(logged) == len(set(logged))  # never written twice
