"""Disk a home's releases take, after N releases of N registered versions, with retention on.

Run: .venv/bin/python bench/release_disk.py [--releases 10] [--keep 3]

Registers N diabetes versions (different alphas) under a temporary MLOPS_HOME, releases each in
turn to local production (process runtime, so no image is built), and after every release prints
the build contexts and venvs left on disk and their size. Ports are its own; nothing leaves
127.0.0.1. Scoring images are not counted (their retention is not built yet).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quick import parse_args


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        if path.exists()
        else 0
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--releases", type=int, default=10)
    parser.add_argument("--keep", type=int, default=3, help="MLOPS_KEEP_RELEASES")
    args = parse_args(parser, releases=2)
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-disk-"))
    os.environ.update(
        {
            "MLOPS_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "MLOPS_KEEP_RELEASES": str(args.keep),
            "MLOPS_LOCAL_RUNTIME": "process",
            "MLOPS_IMAGE_ENGINES": "",
            "MLOPS_PRODUCTION_PORT": "18110",
            "MLOPS_QA_PORT": "18111",
        }
    )
    import dagster as dg

    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.hosting.processes import LocalTarget
    from mlops_assets.hosting.runtimes import venvs_dir
    from mlops_assets.ops.runner import release
    from mlops_assets.settings import get_settings
    from mlops_assets_tests.release_support import register

    quiet_api_stage_warnings()
    settings = get_settings()
    write_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    contexts, venvs = home / "release" / "contexts", venvs_dir(home)
    print(f"{'release':>7} {'contexts':>9} {'contexts MB':>12} {'venvs':>6} {'venvs MB':>9} {'seconds':>8}")
    try:
        with dg.DagsterInstance.get() as instance:
            versions = [register(defs, 0.5 * 2**n) for n in range(args.releases)]
            for n, version in enumerate(versions, 1):
                started = time.perf_counter()
                outcome = release(defs, instance, settings.lock_dir, version)
                assert outcome.success, outcome.errors
                print(
                    f"{n:>7} {len(list(contexts.iterdir())):>9} {_size(contexts) / 1e6:>12.1f} "
                    f"{len(list(venvs.iterdir())):>6} {_size(venvs) / 1e6:>9.1f} "
                    f"{time.perf_counter() - started:>8.1f}"
                )
    finally:
        target = LocalTarget(home)
        for deployment in target.list():
            target.stop(deployment.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
