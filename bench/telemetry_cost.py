"""Per-request cost of scoring telemetry, side by side, with the ASGI app called in-process.

Run: .venv/bin/python bench/telemetry_cost.py [--requests 20000]

Three ways, each in its own process (OpenTelemetry's providers are global):
  off      APPLICATIONINSIGHTS_CONNECTION_STRING unset: no middleware, nothing imported
  ours     the service's RequestTelemetry (one span per request, counts observed at export)
  library  opentelemetry-instrumentation-asgi's OpenTelemetryMiddleware instead
Exports go to an Application Insights ingestion endpoint on 127.0.0.1. No HTTP server is
involved: the figure is the app's own microseconds per 1-row /score request.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402


def measure(way: str, requests: int) -> float:
    from mlops_assets.serving.app import ServiceConfig, create_app
    from mlops_assets_tests.serving_support import SAMPLE, write_release
    from mlops_assets_tests.webhook import TelemetryReceiver

    home = Path(tempfile.mkdtemp(prefix="mlops-bench-telemetry-"))
    write_release(home / "release", version=1)
    receiver = TelemetryReceiver().__enter__()
    config = ServiceConfig(
        model_dir=home / "release",
        keys_file=None,
        env_keys=("k",),
        log_storage_url=(home / "logs").as_uri(),
        spill_dir=home / "spill",
        telemetry_connection_string=receiver.connection_string if way != "off" else None,
    )
    app = create_app(config)
    if way == "library":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        from mlops_assets.serving.telemetry import RequestTelemetry

        app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestTelemetry]
        app.add_middleware(OpenTelemetryMiddleware, excluded_urls="health/live,health/ready,metrics")
    body = json.dumps(SAMPLE).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/score",
        "raw_path": b"/score",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer k"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def one() -> int:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict] = []

        async def receive() -> dict:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"]

    async def run() -> float:
        startup: asyncio.Queue = asyncio.Queue()
        await startup.put({"type": "lifespan.startup"})
        started: list[dict] = []

        async def lifespan_send(message: dict) -> None:
            started.append(message)

        task = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, lifespan_send)
        )
        deadline = time.monotonic() + 30
        while await one() != 200:  # until the model is loaded and verified
            assert time.monotonic() < deadline, "the service never became ready"
            await asyncio.sleep(0.1)
        for _ in range(1000):  # warm-up
            await one()
        begun = time.perf_counter()
        for _ in range(requests):
            await one()
        elapsed = time.perf_counter() - begun
        task.cancel()
        return elapsed / requests * 1e6

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parse_args(parser, requests=500, rounds=1)
    if args.worker:
        print(f"{measure(args.worker, args.requests):.1f}")
        return 0
    ways = ("off", "ours", "library")
    runs: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way in ways:  # interleaved, so a slow moment of the machine hits all alike
            out = subprocess.run(
                [sys.executable, __file__, "--worker", way, "--requests", str(args.requests)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[way].append(float(out.stdout.strip().splitlines()[-1]))
    print(f"{'way':<8}{'us/request (median)':>22}{'runs':>30}")
    for way, found in runs.items():
        median = sorted(found)[len(found) // 2]
        print(f"{way:<8}{median:>22.1f}{', '.join(f'{v:.1f}' for v in found):>30}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
