"""What the project runner costs: its start (a fresh worker: Python, numpy, pandas, scikit-learn,
skops imported, the project mounted) with its first call, and a warm call after it.

Run: .venv/bin/python bench/runner_start.py [--rounds 5]

Each round starts a new runner for the default project, times ``check`` twice (cold, warm) and
closes it; prints min/median/max of each. Nothing leaves this machine.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quick import parse_args


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parse_args(parser, rounds=1)

    from mlops_assets.project.locate import default_project_dir
    from mlops_assets.runner.client import ProjectRunner

    folder = default_project_dir()
    cold, warm = [], []
    for _ in range(args.rounds):
        runner = ProjectRunner(folder)
        try:
            started = time.perf_counter()
            runner.check(folder)
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            runner.check(folder)
            warm.append(time.perf_counter() - started)
        finally:
            runner.close()
    for label, times in (("start + first call", cold), ("warm call", warm)):
        ms = [t * 1000 for t in times]
        print(
            f"{label:<20} min {min(ms):8.1f} ms   median {statistics.median(ms):8.1f} ms   "
            f"max {max(ms):8.1f} ms   ({len(ms)} rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
