"""The serving core without a server: release lookup, the affine fast path, payload rules, the log writer."""

import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.model.artifact import ArtifactError
from mlops_assets.model.loaded import load_release
from mlops_assets.model.manifest import find_manifest
from mlops_assets.model.rows import PayloadError, ServingSpec, rows_from_payload
from mlops_assets.serving import score
from mlops_assets.serving.request_log import RequestLogWriter, record_line
from mlops_assets.storage.fsstore import Storage
from mlops_assets_tests.projects import FEATURES
from mlops_assets_tests.serving_support import SAMPLE, predictions, write_release


def test_release_is_found_in_a_subfolder_as_azure_ml_mounts_it(tmp_path):
    model = write_release(tmp_path / "diabetes" / "3", version=3)
    loaded = load_release(tmp_path)
    assert (loaded.name, loaded.version, loaded.features[0]) == ("diabetes", "3", "age")
    rows = np.asarray(SAMPLE["data"], dtype=float)
    assert loaded.fast_path
    expected = model.predict(pd.DataFrame(rows, columns=FEATURES))  # as it was fitted: named columns
    np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-12)


def test_no_manifest_or_two_manifests_are_errors(tmp_path):
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        find_manifest(tmp_path)
    write_release(tmp_path / "a", version=1)
    write_release(tmp_path / "b", version=2)
    with pytest.raises(ArtifactError, match="2 manifests"):
        find_manifest(tmp_path)


def test_tampered_artifact_and_broken_manifest_are_refused(tmp_path):
    write_release(tmp_path / "t", version=1, tamper=True)
    with pytest.raises(ArtifactError, match="does not match the expected"):
        load_release(tmp_path / "t")
    write_release(tmp_path / "m", version=1)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["sha256"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest lacks sha256"):
        load_release(tmp_path / "m")


@pytest.mark.parametrize("kind", ["bare linear model", "polynomial"])
def test_only_a_model_that_is_affine_gets_the_collapsed_predictor(tmp_path, kind):
    import skops.io as sio
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    from mlops_assets.model.artifact import sha256_hex
    from mlops_assets_tests.projects import FEATURES, TARGET, diabetes_frame

    frame = diabetes_frame()
    estimator = (
        LinearRegression() if kind == "bare linear model" else make_pipeline(PolynomialFeatures(2), Ridge())
    )
    fitted = estimator.fit(frame[FEATURES].to_numpy(), frame[TARGET].to_numpy())
    artifact = sio.dumps(fitted)
    (tmp_path / "model.skops").write_bytes(artifact)
    manifest = {
        "model_name": "m",
        "version": 1,
        "artifact": "model.skops",
        "sha256": sha256_hex(artifact),
        "features": FEATURES,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_release(tmp_path)
    assert loaded.fast_path == (kind == "bare linear model")
    rows = frame[FEATURES].to_numpy()[:50]
    np.testing.assert_allclose(loaded.predict(rows), fitted.predict(rows), rtol=1e-9)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"data": [[1.0] * 10]}, None, None),
        ({"data": [[1] * 10, [2.5] * 10]}, None, None),
        ([], 422, "body must be a JSON object"),
        ({"data": "x"}, 422, "got str"),
        ({"data": [[1] * 9]}, 422, "row 0 has 9 values"),
        ({"data": [[1] * 9, [1] * 11]}, 422, "row 0 has 9 values"),  # twenty values, two rows: still ragged
        ({"data": [[1] * 10, 1.5]}, 422, "row 1 has a float"),
        ({"data": [[1] * 10, None]}, 422, "row 1 has a NoneType"),
        ({"data": [[float("nan")] + [1] * 9]}, 422, "row 0, feature age: nan is not a finite number"),
        ({"data": [[1] * 9 + [float("-inf")]]}, 422, "row 0, feature s6: -inf is not a finite number"),
        ({"data": [[1] * 10] * 4}, 413, "at most 3 per request"),
        ({"data": [[False] + [1] * 9]}, 422, "row 0, feature age: False is not a number"),
        (
            {"data": [[1] * 9 + [2e9]]},
            422,
            r"row 0, feature s6: 2e\+09 is outside a number in \[-1e\+09, 1e\+09\]",
        ),
        ({"data": [dict(zip(FEATURES, [1] * 10, strict=True))]}, None, None),
        ({"data": [dict(zip(FEATURES[1:], [1] * 9, strict=True))]}, 422, "row 0: feature age missing"),
        ({"data": [[1] * 10, [1] * 9 + ["2"]]}, 422, "row 1, feature s6: '2' is not a number"),
        ({"data": [[1] * 10, [[1]] * 10]}, 422, r"row 1, feature age: \[1\] is not a number"),
        ({"data": [[1] * 10, [True] * 10]}, 422, "row 1, feature age: True is not a number"),
        ({"data": [[2**70] * 10]}, 422, "row 0, feature age: 1.18059e\\+21 is outside"),
    ],
)
@pytest.mark.parametrize("with_text", [False, True], ids=["parsed", "with its text"])
def test_payload_rules(payload, status, message, with_text):
    """The same rules and messages whether the rows are checked value by value or (given the
    request's text) as one matrix first."""
    spec = ServingSpec.numbers_only(tuple(FEATURES))
    text = json.dumps(payload).encode() if with_text else None
    if status is None:
        rows = rows_from_payload(payload, spec, 3, text)
        assert rows.values.dtype == np.float64
        np.testing.assert_array_equal(rows.values, rows_from_payload(payload, spec, 3).values)
        return
    with pytest.raises(PayloadError, match=message) as raised:
        rows_from_payload(payload, spec, 3, text)
    assert raised.value.status == status


def test_score_py_keeps_azure_ml_s_contract(tmp_path, monkeypatch):
    model = write_release(tmp_path / "models" / "diabetes" / "1", version=1)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "models"))
    score.init()
    assert score.run(json.dumps(SAMPLE)) == {"result": pytest.approx(predictions(model), rel=1e-12)}
    assert score.run(json.dumps({"data": [[1, 2]]})) == {
        "error": "row 0 has 2 values; the model expects 10 (age, sex, bmi, bp, s1, s2, s3, s4, s5, s6)"
    }
    assert "not valid JSON" in score.run("{oops")["error"]
    assert "not a finite number" in score.run('{"data": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}')["error"]


def test_record_line_embeds_bodies_as_json_even_with_newlines():
    body = b'{\n  "data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]\r\n}'
    line = record_line("abc", 1.5, "7", body, b'{"result":[1.0]}', 0.25, True, '00-x"y-01')
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record["request"] == {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}
    assert record["response"] == {"result": [1.0]} and record["synthetic"] is True
    assert record["traceparent"] == "00-xy-01"


def test_writer_spills_while_storage_fails_then_delivers_and_closes_with_nothing_lost(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    (root / "scoring-logs").write_text("blocks the folder")
    writer = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=3600).start()
    for i in range(10):
        writer.append(record_line(f"r{i}", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    writer._flush()
    assert writer.spilled == 10 and writer.written == 0 and writer.backlog == 0
    (root / "scoring-logs").unlink()
    writer.append(record_line("r10", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    writer.close()
    assert (writer.written, writer.spilled) == (11, 0)
    lines = [json.loads(line) for p in root.rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(r["request_id"] for r in lines) == sorted(f"r{i}" for i in range(11))
    assert not list((tmp_path / "spill").rglob("*.jsonl"))


def test_spilled_records_from_a_previous_process_are_delivered_on_start(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    (root / "scoring-logs").write_text("blocks the folder")
    first = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=3600).start()
    first.append(record_line("old", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    first.close()
    assert first.spilled == 1
    (root / "scoring-logs").unlink()
    second = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=0.05).start()
    assert second.spilled == 1
    second.close()
    assert second.written == 1


def test_a_manifest_whose_features_are_not_the_fitted_columns_is_refused(tmp_path):
    write_release(tmp_path / "r", version=1)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["features"] = manifest["features"][::-1]  # rows would be read in the wrong order
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"fitted on columns \['age', .*the manifest says \['s6'"):
        load_release(tmp_path / "r")


def _service_state(tmp_path):
    """A service's state over ``tmp_path/release``, its request log under ``tmp_path``."""
    from mlops_assets.serving.state import ServiceConfig, ServiceState

    return ServiceState(
        ServiceConfig(
            model_dir=tmp_path / "release",
            keys_file=None,
            env_keys=("k",),
            log_storage_url=(tmp_path / "logs").as_uri(),
            spill_dir=tmp_path / "spill",
        )
    )


def _loaded_service(tmp_path):
    """The scoring service's request handling with a verified release, no server around it."""
    from mlops_assets.serving.handler import ScoreHandler

    write_release(tmp_path / "release", version=1)
    state = _service_state(tmp_path)
    state.refresh_keys()
    state.load()
    assert state.model is not None
    return ScoreHandler(state)


def _call(service, messages: list[dict]) -> list[dict]:
    """POST /score to the service's ASGI handler, the request arriving as ``messages``."""
    import asyncio

    body = b"".join(m.get("body", b"") for m in messages)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/score",
        "headers": [(b"authorization", b"Bearer k"), (b"content-length", str(len(body)).encode())],
    }
    pending, sent = list(messages), []

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(service.score(scope, receive, send))
    return sent


def test_a_body_in_several_messages_is_scored_and_a_client_gone_mid_body_is_counted_not_answered(tmp_path):
    service = _loaded_service(tmp_path)
    body = json.dumps(SAMPLE).encode()
    parts = [{"type": "http.request", "body": body[:7], "more_body": True}]
    sent = _call(service, [*parts, {"type": "http.request", "body": body[7:], "more_body": False}])
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["result"] == pytest.approx(
        service.model.predict(np.asarray(SAMPLE["data"]))
    )
    assert _call(service, parts) == []  # the client left after the first part: nobody to answer
    assert service.tally.codes == {"200": 1, "499": 1}
    assert service.writer.backlog == 1  # only the scored request has a log record


def test_a_failure_inside_scoring_answers_500_in_the_service_s_shape_and_is_counted(tmp_path):
    import dataclasses

    service = _loaded_service(tmp_path)

    def broken(rows):
        raise RuntimeError("the model's own bug")

    service.state.model = dataclasses.replace(service.model, predict=broken, bounded=False)
    sent = _call(service, [{"type": "http.request", "body": json.dumps(SAMPLE).encode()}])
    answer = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 500 and answer["error"] == "the service failed to score this request"
    assert dict(sent[0]["headers"])[b"x-request-id"].decode() == answer["request_id"]
    assert service.tally.codes == {"500": 1} and service.writer.backlog == 0


def test_a_classifier_is_asked_once_only_where_its_label_is_its_likeliest_class():
    """LogisticRegression labels the likeliest class: one predict_proba gives both. A fixed 0.9
    threshold does not: there both are asked, and the label is predict's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier

    from mlops_assets.model.loaded import LoadedModel, classify
    from mlops_assets.model.predictors import labels_are_likeliest

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(400, 3))
    target = rows @ [1.0, -2.0, 0.5] + rng.normal(size=400) > 0
    spec = ServingSpec.from_dict(
        {"name": "t", "task": "binary", "features": [{"name": n, "kind": "numeric"} for n in "abc"]}
    )
    plain = LogisticRegression().fit(rows, target)
    strict = FixedThresholdClassifier(LogisticRegression(), threshold=0.9).fit(rows, target)
    assert labels_are_likeliest(plain, spec) and not labels_are_likeliest(strict, spec)
    for fitted in (plain, strict):
        loaded = LoadedModel(
            "t", "1", ("a", "b", "c"), "", "", fitted, fitted.predict, False,
            spec=spec, classes=tuple(fitted.classes_), labels_from_proba=labels_are_likeliest(fitted, spec),
        )  # fmt: skip
        labels, probabilities = classify(loaded, rows)
        np.testing.assert_array_equal(labels, fitted.predict(rows))
        np.testing.assert_allclose(probabilities, fitted.predict_proba(rows))
    assert (strict.predict(rows) != plain.predict(rows)).any()  # the threshold does change labels


@pytest.mark.parametrize("by", ["position", "name"])
def test_valid_rows_of_every_feature_kind_give_the_same_frame_a_column_at_a_time(by):
    """The fast path (a column at a time) and the value-by-value path agree on every valid row,
    nulls included; anything the fast path does not plainly accept goes value by value."""
    from mlops_assets.model.rows import _frame_by_value, probe_rows
    from mlops_assets_tests.projects import CHURN, CHURN_ROWS

    spec = ServingSpec.from_dict(CHURN.spec.serving_dict())
    rows = probe_rows(spec, 300, seed=1)
    assert any(None in row for row in rows)
    data = [dict(zip(spec.names, row, strict=True)) for row in rows] if by == "name" else rows
    fast = rows_from_payload({"data": data}, spec, 1000)
    pd.testing.assert_frame_equal(fast.values, _frame_by_value(data, spec).values)
    assert fast.values["plan"].dtype == object and fast.values["support_calls"].dtype == np.float64
    unseen = [*CHURN_ROWS, {**CHURN_ROWS[0], "region": "mars"}]  # flagged: scored value by value
    assert rows_from_payload({"data": unseen}, spec, 10).flags == (
        "row 2, feature region: 'mars' is outside one of north, south, east, west (flagged)",
    )


def test_a_dead_workers_stuck_gauge_stops_counting(tmp_path):
    """Workers share their metrics through files: one that was stuck when it died (and was
    restarted) must not keep ``scoring_log_stuck`` at 1 for the workers alive after it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    stuck_then_died = "from mlops_assets.serving import metrics; metrics.LOG_STUCK.set(1); metrics.REQUESTS.labels('200').inc()"
    subprocess.run([sys.executable, "-c", stuck_then_died], env=env, check=True)
    scrape = "from mlops_assets.serving import metrics; print(metrics.render()[0].decode())"
    text = subprocess.run(
        [sys.executable, "-c", scrape], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "scoring_log_stuck 0.0" in text or "scoring_log_stuck" not in text, text
    assert 'scoring_requests_total{code="200"} 1.0' in text  # its counted requests stay counted


def test_a_release_refused_while_it_was_still_being_copied_is_loaded_once_it_is_whole(tmp_path, monkeypatch):
    """The manifest arrived before the artifact (a copy in progress): refused, then tried again
    once the retry delay has passed, with nothing else changed, and served."""
    from mlops_assets.serving import state as service_state

    write_release(tmp_path / "release", version=3)
    artifact = next((tmp_path / "release").rglob("*.skops"))
    whole = artifact.read_bytes()
    artifact.write_bytes(whole[: len(whole) // 2])  # half copied
    monkeypatch.setattr(service_state, "REFUSED_RETRY_SECONDS", 0.2)
    state = _service_state(tmp_path)
    state.load()
    assert state.model is None
    artifact.write_bytes(whole)  # the copy completes; the manifest is untouched
    state.load()
    assert state.model is None  # not at every poll: after the retry delay
    import time

    time.sleep(0.25)
    state.load()
    assert state.model is not None and state.model.version == "3"


def test_a_flood_of_refused_requests_is_counted_in_full_and_logged_within_a_budget(
    tmp_path, monkeypatch, caplog
):
    import logging
    import time

    from mlops_assets.serving import handler
    from mlops_assets.serving.line_budget import LineBudget

    monkeypatch.setattr(handler, "REFUSAL_LINES", LineBudget(burst=5, window=0.3))
    service = _loaded_service(tmp_path)
    caplog.set_level(logging.INFO, logger="mlops_assets.serving")
    for _ in range(60):
        assert _call(service, [{"type": "http.request", "body": b"{not json"}])[0]["status"] == 400
    assert service.tally.codes == {"400": 60}  # every refusal counted
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")]
    assert len(lines) == 5
    time.sleep(0.35)  # the next window
    _call(service, [{"type": "http.request", "body": b"{not json"}])
    last = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")][-1]
    assert last.endswith("(55 more like it not logged)"), last


def test_one_request_flagging_thousands_of_values_of_a_10000_category_feature_stays_small():
    """A spec with 10,000 categories and the flag policy: each flagged value's message once carried
    the whole list (a 3,000-row request wrote 207 MB of log, 10,000 rows OOM-killed the worker).
    Flags now name a few categories, stop at MAX_FLAGS with a count, and a value is echoed short."""
    from mlops_assets.model.rows import MAX_FLAGS, duplicate_key
    from mlops_assets.project.rules import Feature

    categories = tuple(f"category-{n:05d}" for n in range(10_000))
    spec = ServingSpec(
        "wide", "regression", (Feature("city", "categorical", categories=categories, flag=True),)
    )
    rows = rows_from_payload({"data": [[f"unseen-{n}"] for n in range(2_000)]}, spec, 10_000)
    assert rows.count == 2_000 and len(rows.flags) == MAX_FLAGS + 1
    assert rows.flags[-1] == f"… and {2_000 - MAX_FLAGS} more values flagged"
    assert rows.flags[0] == (
        "row 0, feature city: 'unseen-0' is outside one of "
        + ", ".join(categories[:10])
        + ", … (10000 categories) (flagged)"
    )
    assert (
        len(record_line("r", 0.0, "1", b"{}", b"{}", 1.0, False, None, json.dumps(rows.flags).encode()))
        < 40_000
    )
    huge = "x" * 1_000_000
    with pytest.raises(PayloadError) as refused:
        rows_from_payload({"data": [[1]]}, spec, 10)
    assert len(str(refused.value)) < 1_000
    flagged = rows_from_payload({"data": [[huge]]}, spec, 10).flags
    assert len(flagged[0]) < 1_000 and "(1000002 characters)" in flagged[0]
    assert duplicate_key({"data": [{"city": "a"}]}, b'{"data": [{"city": "a:b"}]}') is None  # a colon in text


def test_a_spec_bound_that_is_not_a_number_is_refused_when_the_spec_loads():
    from mlops_assets.project.rules import Feature

    with pytest.raises(ValueError, match="not NaN"):
        Feature.from_dict({"name": "age", "kind": "numeric", "max": float("nan")})


def _connection(handler):
    """The service's HTTP protocol on one connection over ``handler``'s app, as uvicorn makes it."""
    import uvicorn
    from starlette.applications import Starlette
    from uvicorn.server import ServerState

    from mlops_assets.serving.app import ScoringApp
    from mlops_assets.serving.drain import CloseWhileDraining
    from mlops_assets.serving.protocol import BoundedHttpToolsProtocol
    from mlops_assets_tests.serving_support import LoopbackTransport

    app = CloseWhileDraining(ScoringApp(handler, Starlette()), drain=handler.state.drain)
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None)
    config.load()
    state = ServerState()
    protocol = BoundedHttpToolsProtocol(config=config, server_state=state, app_state={})
    socket = LoopbackTransport()
    protocol.connection_made(socket)
    return protocol, socket, state


def _post(body: bytes) -> tuple[bytes, bytes]:
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body), body


def _chunked(body: bytes) -> bytes:
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


def _answers(written: bytes) -> list[tuple[int, dict, dict]]:
    """Each response in ``written``: status, headers (lower-cased names), JSON body."""
    answers = []
    while written:
        head, rest = written.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"]) if "content-length" in headers else None
        if length is None:  # uvicorn's chunked answer to the ASGI path has one chunk
            size, rest = rest.split(b"\r\n", 1)
            body, rest = rest[: int(size, 16)], rest[int(size, 16) + 2 :].removeprefix(b"0\r\n\r\n")
        else:
            body, rest = rest[:length], rest[length:]
        answers.append((int(lines[0].split()[1]), headers, json.loads(body)))
        written = rest
    return answers


def test_a_plain_request_is_answered_in_the_parsers_callback_with_what_the_asgi_path_answers(tmp_path):
    """No task, no ASGI cycle: the answer is written before feeding the bytes returns, even when
    the body comes in two reads; a chunked body goes through the ASGI app and gets the same answer."""
    import asyncio

    handler = _loaded_service(tmp_path)
    body = json.dumps(SAMPLE).encode()

    async def scenario():
        protocol, socket, state = _connection(handler)
        head, _ = _post(body)
        protocol.data_received(head + body[:5])
        assert socket.written == []  # the body is not whole yet
        protocol.data_received(body[5:])
        direct = b"".join(socket.written)
        assert state.tasks == set() and not socket.closed
        socket.written.clear()
        protocol.data_received(_chunked(body))
        assert socket.written == []  # its ASGI task runs on the loop
        while not socket.written or state.tasks:  # until its task has answered and ended
            await asyncio.sleep(0.01)
        return _answers(direct), _answers(b"".join(socket.written))

    [(status, headers, answer)], [(asgi_status, asgi_headers, asgi_answer)] = asyncio.run(scenario())
    assert status == asgi_status == 200
    expected = handler.model.predict(np.asarray(SAMPLE["data"]))
    assert answer["result"] == asgi_answer["result"] == pytest.approx(expected)
    assert headers["x-model-version"] == asgi_headers["x-model-version"] == "1"
    assert headers["content-type"] == asgi_headers["content-type"] == "application/json"
    assert len(headers["x-request-id"]) == 32 and headers["x-request-id"] != asgi_headers["x-request-id"]
    assert handler.tally.codes == {"200": 2} and handler.writer.backlog == 2


def test_pipelined_requests_are_answered_in_order_whichever_path_each_takes(tmp_path):
    import asyncio

    handler = _loaded_service(tmp_path)
    one, two = json.dumps(SAMPLE).encode(), json.dumps({"data": SAMPLE["data"][:1]}).encode()

    async def scenario():
        protocol, socket, state = _connection(handler)
        # A chunked request (ASGI, answered on the loop), then two plain ones behind it, the last
        # ending in a later read: neither may overtake the first.
        protocol.data_received(_chunked(one) + b"".join(_post(two)) + b"".join(_post(one))[:-1])
        protocol.data_received(b"".join(_post(one))[-1:])
        while b"".join(socket.written).count(b"HTTP/1.1 ") < 3 or state.tasks:
            await asyncio.sleep(0.01)
        return _answers(b"".join(socket.written))

    answers = asyncio.run(scenario())
    assert [len(answer["result"]) for _, _, answer in answers] == [2, 1, 2]


def test_a_direct_request_still_arriving_at_shutdown_is_answered_then_closed_and_one_cut_off_is_counted(
    tmp_path,
):
    import asyncio

    handler = _loaded_service(tmp_path)
    body = json.dumps(SAMPLE).encode()
    head, _ = _post(body)

    async def scenario():
        protocol, socket, _ = _connection(handler)
        protocol.data_received(head + body[:5])
        protocol.shutdown()  # the server stops while this body is on its way
        assert not socket.closed
        protocol.data_received(body[5:])
        [(status, headers, _)] = _answers(b"".join(socket.written))
        assert status == 200 and headers["connection"] == "close" and socket.closed
        protocol, socket, _ = _connection(handler)
        protocol.data_received(head + body[:5])
        protocol.connection_lost(None)  # the client left mid-body
        assert socket.written == []

    asyncio.run(scenario())
    assert handler.tally.codes == {"200": 1, "499": 1} and handler.writer.backlog == 1


def test_under_a_wrapper_that_must_see_every_request_nothing_is_answered_directly(tmp_path):
    from mlops_assets.serving.app import ScoringApp
    from mlops_assets.serving.drain import CloseWhileDraining
    from mlops_assets.serving.protocol import direct_handler

    handler = _loaded_service(tmp_path)
    app = CloseWhileDraining(ScoringApp(handler, None), drain=handler.state.drain)

    class Tracing:  # as OpenTelemetry's ASGI middleware wraps the app when telemetry is on
        def __init__(self, app) -> None:
            self.app = app

    assert direct_handler(app) is handler and direct_handler(Tracing(app)) is None
