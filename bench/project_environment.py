"""A project's own environment (the platform's `train` group plus its requirements.lock): seconds
to make it the first time, and to find it again (what every later runner and train.py start pays).

The project's packages come from a folder of wheels made here (nothing leaves this machine); the
platform's from uv's cache, as after `make install`. Each run makes a fresh environments folder.

Run: .venv/bin/python bench/project_environment.py [--quick]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlops_assets.ops.lock import lock_project
from mlops_assets.ops.scaffold import scaffold
from mlops_assets.runner.environments import environment_python
from mlops_assets_tests.wheels import make_wheel


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        wheels = root / "wheels"
        wheels.mkdir()
        make_wheel(wheels, "tinylib", "1.0")
        project = root / "project"
        scaffold(project, "binary")
        locking = []
        for _ in range(rounds):
            locking.append(timed(lambda: lock_project(project, ("tinylib",), str(wheels))))
        lock = lock_project(project, ("tinylib",), str(wheels))
        first, again = [], []
        for index in range(rounds):
            envs = root / f"environments-{index}"
            first.append(timed(lambda envs=envs: environment_python(lock, envs, str(wheels))))
            again.append(timed(lambda envs=envs: environment_python(lock, envs, str(wheels))))
        print(
            f"mlops-assets lock (uv pip compile with the platform's pins): median {statistics.median(locking):.2f} s"
        )
        print(
            f"environment, first time (venv + train group from uv's cache + the lock): median "
            f"{statistics.median(first):.2f} s, max {max(first):.2f} s over {rounds}"
        )
        print(f"environment, found again: median {statistics.median(again) * 1e3:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round: checks the script works")
    main(1 if parser.parse_args().quick else 5)
