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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.asgi_drive import microseconds_per_request, post, post_scope, started  # noqa: E402
from bench.quick import parse_args  # noqa: E402


def measure(way: str, requests: int) -> float:
    from mlops_assets.serving.app import create_app
    from mlops_assets.serving.state import ServiceConfig
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

        app = OpenTelemetryMiddleware(app.app, excluded_urls="health/live,health/ready,metrics")
    body = json.dumps(SAMPLE).encode()
    scope = post_scope("/score", body, {b"authorization": b"Bearer k"})

    async def run() -> float:
        async def ready() -> bool:
            return (await post(app, scope, body))[0] == 200

        task = await started(app, ready)
        try:
            return await microseconds_per_request(app, scope, body, requests)
        finally:
            task.cancel()

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
