"""Where a /score request's time goes in the app: ours against the bare reference, in-process.

Run: .venv/bin/python bench/score_profile.py [--requests 5000] [--rounds 3] [--profile]

Both apps (``mlops_assets.serving.app`` with every feature on, and ``bench/bare_starlette.py``)
are driven through ASGI with no HTTP server, so the figures are the apps' own microseconds per
request, 1-row and 100-row, for each model project; uvicorn's protocol and the socket (the same
for both) are not in them. ``--profile`` adds cProfile's top functions for ours, by own time.
"""

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.asgi_drive import microseconds_per_request, post, post_scope, started  # noqa: E402
from bench.projects import BenchProject, bench_projects  # noqa: E402
from bench.quick import parse_args  # noqa: E402

KEY = b"bench-key"


def ours(bench: BenchProject, work: Path):
    from mlops_assets.serving.app import ServiceConfig, create_app
    from mlops_assets.serving.features import SPEC_NAME
    from mlops_assets_tests.projects import write_project_release

    write_project_release(work / "release", bench.project, bench.model)
    spec = work / SPEC_NAME
    spec.write_text(json.dumps(bench.project.spec.serving_dict()))
    return create_app(
        ServiceConfig(
            model_dir=work / "release",
            keys_file=None,
            env_keys=(KEY.decode(),),
            log_storage_url=(work / "logs").as_uri(),
            spill_dir=work / "spill",
            spec_path=spec,
        )
    )


def measure(bench: BenchProject, requests: int, rounds: int, profile: bool) -> dict:
    from bench.bare_starlette import make_app

    work = Path(tempfile.mkdtemp(prefix=f"mlops-bench-profile-{bench.name}-"))
    apps = {"ours": ours(bench, work), "bare-starlette": make_app(bench.model)}
    figures: dict[tuple[str, int], list[float]] = {}

    async def run() -> None:
        tasks = []
        for app in apps.values():
            body = json.dumps({"data": bench.payloads[1]}).encode()
            scope = post_scope("/score", body, {b"authorization": b"Bearer " + KEY})

            async def ready(app=app, scope=scope, body=body) -> bool:
                return (await post(app, scope, body))[0] == 200

            tasks.append(await started(app, ready))
        for _ in range(rounds):
            for rows in (1, 100):
                body = json.dumps({"data": bench.payloads[rows]}).encode()
                scope = post_scope("/score", body, {b"authorization": b"Bearer " + KEY})
                for name, app in apps.items():
                    per_request = await microseconds_per_request(
                        app, scope, body, max(requests // (10 if rows > 1 else 1), 1)
                    )
                    figures.setdefault((name, rows), []).append(per_request)
        if profile:
            for rows in (1, 100):
                body = json.dumps({"data": bench.payloads[rows]}).encode()
                scope = post_scope("/score", body, {b"authorization": b"Bearer " + KEY})
                profiler = cProfile.Profile()
                profiler.enable()
                await microseconds_per_request(apps["ours"], scope, body, requests // 10, warmup=0)
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                print(f"\n--- {bench.name}, ours, {rows}-row requests: cProfile, by own time ---")
                print(out.getvalue()[out.getvalue().index("ncalls") :])
        for task in tasks:
            task.cancel()

    asyncio.run(run())
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=5000, help="1-row requests per run (100-row: a tenth)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--projects", default="diabetes,churn")
    parser.add_argument("--profile", action="store_true")
    args = parse_args(parser, requests=200, rounds=1)
    rows_out = []
    for bench in bench_projects(args.projects.split(",")):
        figures = measure(bench, args.requests, args.rounds, args.profile)
        for rows in (1, 100):
            median = {
                name: sorted(found)[len(found) // 2] for (name, r), found in figures.items() if r == rows
            }
            rows_out.append((bench.name, rows, median["ours"], median["bare-starlette"]))
    print(f"\n{'project':<10}{'rows':>6}{'ours us':>10}{'bare us':>10}{'ours - bare':>13}")
    for project, rows, mine, bare in rows_out:
        print(f"{project:<10}{rows:>6}{mine:>10.1f}{bare:>10.1f}{mine - bare:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
