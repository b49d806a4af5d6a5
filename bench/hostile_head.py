"""Other clients' latency while attackers send 64 MB request headers, against a quiet baseline.

Run: .venv/bin/python bench/hostile_head.py [--duration 15] [--connections 16] [--attackers 4]

It starts `mlops-assets serve` (2 workers) and drives it with wrk (1-row requests) twice: alone,
then while ``--attackers`` threads each open a connection, send a head that never ends (64 MB of
header bytes) and reconnect as soon as the service cuts them off. Prints requests/s and p50/p99
side by side, how many heads were cut off, and the seconds a cut-off took. Only 127.0.0.1 is used.
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from bench.scoring import post_script, wrk_post  # noqa: E402
from mlops_assets_tests.serving_support import SAMPLE, Service, write_release  # noqa: E402

HEAD_BYTES = 64 << 20


def attack(url: str, stop: threading.Event, cut_seconds: list[float]) -> None:
    host, port = url.removeprefix("http://").split(":")
    chunk = b"a" * 65536
    while not stop.is_set():
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as client:
            try:
                client.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(HEAD_BYTES // len(chunk)):
                    client.sendall(chunk)
                while client.recv(65536):
                    pass
            except OSError:
                pass  # cut off
        cut_seconds.append(time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--attackers", type=int, default=4)
    args = parse_args(parser, duration=3, connections=4, attackers=1)
    work = Path(tempfile.mkdtemp(prefix="mlops-hostile-"))
    home = work / "mlops"
    write_release(home / "release", version=1)
    service = Service(home, home / "release", workers=2).wait_live()
    service.wait_version("1")
    body = work / "body.json"
    body.write_text(json.dumps(SAMPLE))
    script = post_script(work, body, {"Authorization": "Bearer key-one"})
    try:
        quiet = wrk_post(service.url, script, args.connections, args.duration)
        stop, cut_seconds = threading.Event(), []
        attackers = [
            threading.Thread(target=attack, args=(service.url, stop, cut_seconds))
            for _ in range(args.attackers)
        ]
        for thread in attackers:
            thread.start()
        attacked = wrk_post(service.url, script, args.connections, args.duration)
        stop.set()
        for thread in attackers:
            thread.join()
    finally:
        service.stop()
    print(f"{'':22s} {'requests/s':>11s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for name, figures in (("alone", quiet), (f"{args.attackers} x 64 MB heads", attacked)):
        print(
            f"{name:22s} {figures['rps']:>11,.0f} {figures['p50']:>8.2f} {figures['p99']:>8.2f} {figures['non2xx']:>8d}"
        )
    if cut_seconds:
        print(
            f"heads cut off: {len(cut_seconds)}; seconds until cut off: median {statistics.median(cut_seconds):.3f}, "
            f"max {max(cut_seconds):.3f} (each would have been {HEAD_BYTES >> 20} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
