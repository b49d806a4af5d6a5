"""Where a /score request's time goes: ours against the bare reference, in-process, on uvloop.

Run: .venv/bin/python bench/score_profile.py [--requests 5000] [--rounds 3] [--profile]

Both apps (``mlops_assets.serving.app`` with every feature on, and ``bench/bare_starlette.py``)
are driven in one process, one request at a time, two ways: through ASGI alone ("app": the
app's own microseconds per request) and through uvicorn's HTTP protocol fed the request's bytes
on a keep-alive connection ("http": parse, app, response written; ours with its bounded
protocol and the headers bench/scoring.py sends it). No socket, kernel or client is involved, so
these figures hold still on a shared machine where req/s does not; 1-row and 100-row requests,
for each model project; ``bench/bare_asgi.py`` (the reference without Starlette) for
information. ``--profile`` adds cProfile's top functions for ours over HTTP.
"""

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.asgi_drive import (  # noqa: E402
    http_microseconds_per_request,
    microseconds_per_request,
    post,
    post_scope,
    raw_post,
    started,
)
from bench.projects import BenchProject, bench_projects  # noqa: E402
from bench.quick import parse_args  # noqa: E402

KEY = b"bench-key"


def ours(bench: BenchProject, work: Path):
    from mlops_assets.model.rows import SPEC_NAME
    from mlops_assets.serving.app import create_app
    from mlops_assets.serving.state import ServiceConfig

    bench.write_release(work / "release")  # as registration writes it: compiled where it compiles
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


OUR_HEADERS = {b"Authorization": b"Bearer " + KEY, b"x-mlops-synthetic": b"true"}


def measure(bench: BenchProject, requests: int, rounds: int, profile: bool) -> dict:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from bench import bare_asgi
    from bench.bare_starlette import make_app
    from mlops_assets.serving.protocol import BoundedHttpToolsProtocol

    work = Path(tempfile.mkdtemp(prefix=f"mlops-bench-profile-{bench.name}-"))
    categories = bench.project.spec.native_categories
    apps = {
        "ours": (ours(bench, work), BoundedHttpToolsProtocol, OUR_HEADERS),
        "bare-starlette": (make_app(bench.model, categories), HttpToolsProtocol, {}),
        "bare-asgi": (bare_asgi.make_app(bench.model, categories), HttpToolsProtocol, {}),  # for information
    }
    figures: dict[tuple[str, str, int], list[float]] = {}

    def request(rows: int, headers: dict[bytes, bytes]) -> tuple[dict, bytes, bytes]:
        body = json.dumps({"data": bench.payloads[rows]}).encode()
        scope = post_scope("/score", body, {name.lower(): value for name, value in headers.items()})
        return scope, body, raw_post("/score", body, headers)

    async def run() -> None:
        tasks = []
        for app, _, headers in apps.values():
            scope, body, _ = request(1, headers)

            async def ready(app=app, scope=scope, body=body) -> bool:
                return (await post(app, scope, body))[0] == 200

            tasks.append(await started(app, ready))
        for _ in range(rounds):
            for rows in (1, 100):
                count = max(requests // (10 if rows > 1 else 1), 1)
                for name, (app, protocol, headers) in apps.items():
                    scope, body, raw = request(rows, headers)
                    per_request = await microseconds_per_request(app, scope, body, count)
                    figures.setdefault((name, "app", rows), []).append(per_request)
                    per_request, answer = await http_microseconds_per_request(protocol, app, raw, count)
                    assert b" 200 OK" in answer, answer[:300]
                    figures.setdefault((name, "http", rows), []).append(per_request)
        if profile:
            app, protocol, headers = apps["ours"]
            for rows in (1, 100):
                raw = request(rows, headers)[2]
                profiler = cProfile.Profile()
                profiler.enable()
                await http_microseconds_per_request(protocol, app, raw, requests // 10, warmup=0)
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
                print(f"\n--- {bench.name}, ours over HTTP, {rows}-row requests: cProfile, by own time ---")
                print(out.getvalue()[out.getvalue().index("ncalls") :])
        for task in tasks:
            task.cancel()

    uvloop.run(run())
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
    table = []
    for bench in bench_projects(args.projects.split(",")):
        figures = measure(bench, args.requests, args.rounds, args.profile)
        median = {key: sorted(found)[len(found) // 2] for key, found in figures.items()}
        for way in ("app", "http"):
            for rows in (1, 100):
                mine, bare = median[("ours", way, rows)], median[("bare-starlette", way, rows)]
                table.append((bench.name, way, rows, mine, bare, median[("bare-asgi", way, rows)]))
    print(f"\nmedians of {args.rounds} round(s), microseconds per request, one at a time")
    print(
        f"\n{'project':<10}{'way':>6}{'rows':>6}{'ours us':>10}{'bare us':>10}{'ours - bare':>13}{'bare/ours':>11}{'bare-asgi us':>14}"
    )
    for project, way, rows, mine, bare, raw in table:
        print(
            f"{project:<10}{way:>6}{rows:>6}{mine:>10.1f}{bare:>10.1f}{mine - bare:>13.1f}{bare / mine:>10.2f}x{raw:>14.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
