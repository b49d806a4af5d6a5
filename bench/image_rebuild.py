"""Seconds to build a scoring image, cold and when only the model changed, for a project that
locks packages of its own (parcels: LightGBM from its lock, libgomp1 from Debian) beside one that
does not (diabetes), in one run with podman.

For each project two versions are assembled as a release assembles them (the project's package and
serving spec, the serving requirements, the project's own layer from MLOPS_PACKAGE_INDEX), differing
only in the model file; the first is built with ``--no-cache`` (every layer: apt, the platform's
packages, the project's), the second as a retrain's release builds it (the layers above the model
come from the first). The artifacts are stand-in bytes: a build never loads the model.

Run: MLOPS_PACKAGE_INDEX=.wheelhouse .venv/bin/python bench/image_rebuild.py
"""

import tempfile
import time
from pathlib import Path

from mlops_assets.hosting.engines import find_engine
from mlops_assets.project.loader import load_project
from mlops_assets.project.locate import MODELS_DIR
from mlops_assets.project.package import package_sources
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.settings import get_settings

PROJECTS = ("diabetes", "parcels")


def timed_build(engine, tag: str, base: str, context: Path, cold: bool) -> float:
    args = engine.build_args(tag, base, context)
    if cold:
        args.insert(1, "--no-cache")
    started = time.perf_counter()
    built = engine.run(*args, timeout=1800)
    if built.returncode != 0:
        raise SystemExit(f"{tag}: build failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    engine = find_engine(("podman",))
    if engine is None:
        raise SystemExit("podman does not answer: `make container-base` sets it up")
    base = engine.python_base()
    index = get_settings().package_index
    requirements = serving_requirements()
    print(f"{'project':<10} {'cold build':>11} {'model-only rebuild':>19}  (podman, index {index})")
    with tempfile.TemporaryDirectory() as scratch:
        for name in PROJECTS:
            project = load_project(MODELS_DIR / name)
            seconds, tags = [], []
            for version in (1, 2):
                context, _ = assemble(
                    Path(scratch) / name,
                    "model.skops",
                    f"{name} model {version} {time.time_ns()}".encode(),
                    {"model_name": name, "version": version},
                    requirements,
                    serving_spec=project.spec.serving_dict(),
                    package=package_sources(project.folder),
                    package_index=index,
                )
                tag = f"localhost/mlops-bench-rebuild/{name}:{version}"
                seconds.append(timed_build(engine, tag, base, context.path, cold=version == 1))
                tags.append(tag)
            engine.run("image", "rm", "--force", *tags, timeout=120)
            print(f"{name:<10} {seconds[0]:>10.1f}s {seconds[1]:>18.1f}s")


if __name__ == "__main__":
    main()
