"""The request log loses nothing: storage and the spill folder failing together, two writers of one
spill folder, a writer that died mid-delivery. Real files, real threads; faults injected by
turning folders into files (root ignores permissions, a file where a folder must be stops it)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets.serving.request_log import RequestLogWriter
from mlops_assets.storage.fsstore import Storage
from mlops_assets_tests.serving_support import SAMPLE, break_folder, repair_folder, service_with_own_log


def _record(n: int) -> bytes:
    return json.dumps({"request_id": f"r{n:06d}"}, separators=(",", ":")).encode() + b"\n"


def _spilled_name(n: int) -> str:
    """As a writer names a spilled batch: received ms, writer id, sequence."""
    return f"{1764460800000 + n}-earlier-writer-{n:06d}.jsonl"


def _stored_ids(root: Path) -> list[str]:
    return [
        json.loads(line)["request_id"]
        for path in sorted(root.rglob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def _until(predicate, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_storage_and_spill_failing_together_keep_the_records_in_memory_and_deliver_them_later(tmp_path):
    logs, spill = tmp_path / "logs", tmp_path / "spill"
    logs.mkdir()
    writer = RequestLogWriter(Storage(str(logs)), spill, flush_seconds=0.05, max_retry_seconds=0.2).start()
    try:
        break_folder(logs)
        break_folder(spill)
        for n in range(50):
            writer.append(_record(n))
        _until(lambda: writer.stuck and writer.failures >= 2, "the writer says it can keep them nowhere")
        assert writer.alive and writer.backlog == 50  # it did not die, and it dropped nothing
        assert not list(tmp_path.rglob("*.tmp-*"))  # no partial spill file left
        writer.append(_record(50))

        repair_folder(spill)  # the disk has room again; storage still fails
        _until(lambda: not writer.stuck and writer.spilled == 51, "spilled once the disk had room")
        repair_folder(logs)  # storage is back
        _until(lambda: writer.spilled == 0 and writer.written == 51, "delivered without a restart")
    finally:
        writer.close()
    assert sorted(_stored_ids(logs)) == [f"r{n:06d}" for n in range(51)]  # each record, once


def test_two_writers_of_one_spill_folder_deliver_each_spilled_file_once(tmp_path):
    logs, spill = tmp_path / "logs", tmp_path / "spill"
    day = spill / "scoring-logs" / "date=2026-11-30"
    day.mkdir(parents=True)
    for n in range(300):  # what a storage outage left behind
        (day / _spilled_name(n)).write_bytes(_record(n))
    writers = [
        RequestLogWriter(Storage(str(logs)), spill, flush_seconds=0.01).start(),
        RequestLogWriter(Storage(str(logs)), spill, flush_seconds=0.01).start(),
    ]
    try:
        # Not "no .jsonl left": a claimed file is renamed before it is delivered and counted.
        _until(lambda: sum(w.written for w in writers) >= 300, "every spilled file delivered")
        assert all(w.alive for w in writers)
        assert sum(w.written for w in writers) == 300 and not [p for p in spill.rglob("*") if p.is_file()]
    finally:
        for writer in writers:
            writer.close()
    ids = _stored_ids(logs)
    assert len(ids) == 300 and len(set(ids)) == 300


def test_a_dead_writers_claim_goes_back_to_the_queue_and_its_temp_file_goes(tmp_path):
    logs, spill = tmp_path / "logs", tmp_path / "spill"
    day = spill / "scoring-logs" / "date=2026-11-30"
    day.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)  # a process that has exited
    (day / f"{_spilled_name(1)}.claim-{pid}-0123abcd").write_bytes(_record(1))  # it died while delivering
    (day / f"{_spilled_name(2)}.tmp-{pid}-0123abcd").write_bytes(b'{"request_id":"r0000')  # and spilling
    writer = RequestLogWriter(Storage(str(logs)), spill, flush_seconds=0.05).start()
    try:
        _until(lambda: writer.written == 1, "the claimed file delivered")
    finally:
        writer.close()
    assert _stored_ids(logs) == ["r000001"] and not any(p.is_file() for p in spill.rglob("*"))


def test_the_spill_folder_delivers_only_its_own_record_files_and_never_stalls_on_one_it_cannot(tmp_path):
    """Whoever can write the spill folder cannot write elsewhere in storage through it: only this
    service's batch files go, only under scoring-logs/. Anything else is set aside under refused/
    and counted, and the files behind it are delivered all the same."""
    logs, spill = tmp_path / "logs", tmp_path / "spill"
    day = spill / "scoring-logs" / "date=2026-11-30"
    day.mkdir(parents=True)
    (day / _spilled_name(1)).write_bytes(_record(1))
    planted = {
        spill / "events" / "production" / "20261130T000000000000-forged.jsonl": _record(90),
        day / "notes.jsonl": _record(91),  # not a batch's name
        day / _spilled_name(2): b'{"action":"rollback"}\n',  # a batch's name, not records
        day / _spilled_name(3): _record(93),  # another uid's: chowned below
    }
    for path, data in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chown(day / _spilled_name(3), 4242, 4242)
    secret = tmp_path / "secret.txt"
    secret.write_text("a key")
    (day / _spilled_name(4)).symlink_to(secret)  # a link to a file the service may read
    (day / _spilled_name(5)).write_bytes(_record(5))  # behind all of those: still delivered
    writer = RequestLogWriter(Storage(str(logs)), spill, flush_seconds=0.05).start()
    try:
        _until(lambda: writer.written == 2 and writer.refused == 5, "delivered and set aside")
    finally:
        writer.close()
    assert sorted(_stored_ids(logs)) == ["r000001", "r000005"]
    stored = {p.relative_to(logs).as_posix() for p in logs.rglob("*") if p.is_file()}
    assert stored == {f"scoring-logs/date=2026-11-30/{_spilled_name(n)}" for n in (1, 5)}
    refused = {p.relative_to(spill / "refused").as_posix() for p in (spill / "refused").rglob("*")}
    assert {p.relative_to(spill).as_posix() for p in planted} <= refused
    assert secret.read_text() == "a key"  # the link was moved, not what it points to


def test_records_held_past_midnight_land_in_the_day_they_were_received(tmp_path):
    """A batch flushed long after midnight (storage was down, the records waited in memory) is
    split by the day each record was received, so each day's compaction finds its own."""
    from datetime import UTC, datetime, timedelta

    from mlops_assets.monitoring.scoring_logs import folder_of, source_files
    from mlops_assets.serving.request_log import record_line

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    late, early = midnight - timedelta(seconds=30), midnight + timedelta(seconds=30)
    logs = tmp_path / "logs"
    writer = RequestLogWriter(Storage(str(logs)), tmp_path / "spill", flush_seconds=3600)
    for n, received in enumerate((late, late, early)):
        line = record_line(
            f"r{n}", received.timestamp(), "1", b'{"data": [[1]]}', b'{"result": [2]}', 1.0, False, None
        )
        writer.append(line)
    writer.start().close()  # one flush, today: hours after both days ended
    storage = Storage(str(logs))
    for day, ids in ((late.date(), ["r0", "r1"]), (early.date(), ["r2"])):
        own = [f for f in source_files(storage, day) if f.path.startswith(folder_of(day) + "/")]
        found = [
            json.loads(line)["request_id"] for f in own for line in storage.read_bytes(f.path).splitlines()
        ]
        assert found == ids, (day, [f.path for f in own])
    assert writer.written == 3


@pytest.mark.slow
def test_a_service_that_can_keep_no_record_sheds_and_says_so_then_recovers_by_itself(tmp_path):
    service, logs, spill = service_with_own_log(tmp_path)
    try:
        service.wait_version("1")
        assert service.score().status_code == 200
        _until(lambda: len(_stored_ids(logs)) == 1, "the first record stored")  # nothing pending now
        stored = logs / "scoring-logs"
        stored.rename(logs / "kept")  # what was stored stays; the log's own folder becomes a file
        break_folder(stored)
        break_folder(spill)
        answered = service.score()  # accepted before the writer found out: its record waits in memory
        assert answered.status_code == 200

        def refused() -> bool:
            return httpx.get(f"{service.url}/health/ready").status_code == 503

        _until(refused, "readiness says the request log can keep nothing")
        assert "keep no record" in httpx.get(f"{service.url}/health/ready").json()["reason"]
        shed = httpx.post(f"{service.url}/score", json=SAMPLE, headers={"authorization": "Bearer key-one"})
        assert shed.status_code == 503 and shed.headers["retry-after"]
        metrics = httpx.get(f"{service.url}/metrics").text
        assert "scoring_log_stuck 1.0" in metrics

        repair_folder(spill)
        stored.unlink()
        (logs / "kept").rename(stored)
        _until(lambda: httpx.get(f"{service.url}/health/ready").status_code == 200, "ready again, no restart")
        _until(lambda: len(_stored_ids(logs)) == 2, "both answered requests' records stored")
        assert service.score().status_code == 200
    finally:
        service.stop()
    ids = _stored_ids(logs)
    assert answered.headers["x-request-id"] in ids and len(ids) == len(set(ids)) == 3
    assert os.listdir(spill) == [] or not list(spill.rglob("*.jsonl"))
