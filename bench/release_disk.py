"""Disk a home's releases take, after N releases of N registered versions, with retention on.

Run: .venv/bin/python bench/release_disk.py [--releases 10] [--keep 3] [--engine podman|none]

Registers N diabetes versions (different alphas) under a temporary MLOPS_HOME, releases each in
turn to local production (process runtime) and after every release prints the build contexts,
venvs and scoring images the home holds. Images share their layers (the base and the locked
requirements), so their disk is measured as the free space the run has taken so far on the
engine's storage ("storage MB": the venv and contexts too when they share its file system, and
any other work on the machine). With ``--engine none`` no image is built; ``--keep`` at least
``--releases`` shows the same run without retention. Ports are its own; nothing leaves 127.0.0.1;
the home's images are let go of at the end, as `make clean` does.
"""

import argparse
import os
import shutil
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
    parser.add_argument("--engine", choices=["podman", "none"], default="podman")
    args = parse_args(parser, releases=2)
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-disk-"))
    os.environ.update(
        {
            "MLOPS_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "MLOPS_KEEP_RELEASES": str(args.keep),
            "MLOPS_LOCAL_RUNTIME": "process",
            "MLOPS_IMAGE_ENGINES": "" if args.engine == "none" else args.engine,
            "MLOPS_PRODUCTION_PORT": "18110",
            "MLOPS_QA_PORT": "18111",
        }
    )
    import dagster as dg

    from mlops_assets import quiet_api_stage_warnings
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.hosting.engines import Engine
    from mlops_assets.hosting.image_holds import held, let_go
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
    engine = Engine(args.engine) if args.engine != "none" else None
    free_before = _free_bytes(engine)
    print(
        f"{'release':>7} {'contexts':>9} {'contexts MB':>12} {'venvs':>6} {'venvs MB':>9} "
        f"{'images':>7} {'storage MB':>10} {'seconds':>8}"
    )
    try:
        with dg.DagsterInstance.get() as instance:
            versions = [register(defs, 0.5 * 2**n) for n in range(args.releases)]
            for n, version in enumerate(versions, 1):
                started = time.perf_counter()
                outcome = release(defs, instance, settings.lock_dir, version)
                assert outcome.success, outcome.errors
                images = held(engine, home) if engine else {}
                print(
                    f"{n:>7} {len(list(contexts.iterdir())):>9} {_size(contexts) / 1e6:>12.1f} "
                    f"{len(list(venvs.iterdir())):>6} {_size(venvs) / 1e6:>9.1f} "
                    f"{len(images):>7} {(free_before - _free_bytes(engine)) / 1e6:>10.0f} "
                    f"{time.perf_counter() - started:>8.1f}"
                )
    finally:
        target = LocalTarget(home)
        for deployment in target.list():
            target.stop(deployment.name)
        if engine:
            print(f"let go of the home's images: {let_go(engine, home, keep=set()).summary()}")
    return 0


def _free_bytes(engine) -> int:
    if engine is None:
        return 0
    root = engine.run("info", "--format", "{{.Store.GraphRoot}}", timeout=300).stdout.strip()
    return shutil.disk_usage(root).free


if __name__ == "__main__":
    sys.exit(main())
