"""The long overload run: far more connections than the service admits, for a bounded time.

Run: .venv/bin/python bench/overload.py [--duration 60] [--connections 256] [--limit 64]

It starts `mlops-assets serve` (2 workers, MLOPS_SCORING_MAX_INFLIGHT=limit per worker), drives
it with wrk (100-row payloads), samples RSS every second, stops it with SIGTERM and then checks
that every 2xx wrk counted is in the request log exactly once. Prints the figures; exits 1 if a
2xx record is missing or duplicated. Only 127.0.0.1 is used.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from bench.scoring import post_script, rss_mb  # noqa: E402
from mlops_assets_tests.serving_support import Service, write_release  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--limit", type=int, default=64, help="admitted connections+tasks per worker")
    args = parse_args(parser, duration=3, connections=32)

    work = Path(tempfile.mkdtemp(prefix="mlops-overload-"))
    home = work / "mlops"
    write_release(home / "release", version=1)
    service = Service(
        home, home / "release", env={"MLOPS_SCORING_MAX_INFLIGHT": str(args.limit)}, workers=2
    ).wait_live()
    service.wait_version("1")
    body = work / "body.json"
    body.write_text(json.dumps({"data": [[50, 1, 25.0, 90, 180, 110, 50, 4, 4.5, 90]] * 100}))
    script = post_script(work, body, {"Authorization": "Bearer key-one"})
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append(max(rss_mb(service.process.pid)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "-s",
            str(script),
            f"{service.url}/score",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done.set()
    sampler.join()
    alive = service.process.poll() is None
    service.stop()

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    shed = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(r"Socket errors: (.*)", out)
    # The id opens every line: read it without parsing the 100-row bodies.
    records = [
        line[15:47]
        for path in (home / "storage" / "scoring-logs").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    ok = total - shed
    print(out)
    print(f"service alive through the run: {alive}")
    print(f"2xx: {ok}   shed (non-2xx, 503): {shed}   socket errors: {errors.group(1) if errors else 'none'}")
    print(
        f"RSS of the largest process, MB: first {samples[0]:.0f}, max {max(samples):.0f}, last {samples[-1]:.0f}"
    )
    print(f"request log: {len(records)} records, {len(set(records))} distinct (2xx counted by wrk: {ok})")
    # wrk stops counting at its deadline; requests answered after it are logged but not counted.
    lost = ok > len(set(records))
    duplicated = len(records) != len(set(records))
    print("RESULT:", "FAIL" if lost or duplicated or not alive else "OK")
    return 1 if lost or duplicated or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
