"""The shipped projects' scoring-image build contexts at two commits, file by file, and the cold
build of each: does a change leave the default projects' images as they were?

Each commit gets a worktree of its own (installed from uv's cache, as ``demo_compare.py`` makes
them). There, diabetes' and churn's contexts are assembled from the same stand-in artifact and
manifest, and every file's sha256 is printed. The platform's own code under
``project/mlops_assets/`` is left out, since it changes with any commit; the packaged serving spec
and project package are kept. With ``--build``, each commit's diabetes context is built with
podman, alternately, with a marker file making its ``COPY project/`` layer cold for both sides
alike (an image another home holds must not make one side look faster).

Run: .venv/bin/python bench/context_compare.py BEFORE [AFTER] [--build N]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.demo_compare import REPO, worktree

PROJECTS = ("diabetes", "churn")
# Run inside a worktree's own venv: its code assembles and builds its own contexts.
_SIDE = r"""
import hashlib, json, sys, time, uuid
from pathlib import Path
import mlops_assets
from mlops_assets.hosting.engines import find_engine
from mlops_assets.project.loader import load_project
from mlops_assets.project.package import package_sources
from mlops_assets.release.build_context import assemble, serving_requirements

root, out, build = Path(mlops_assets.__file__).parents[1], Path(sys.argv[1]), sys.argv[2] == "build"
found = {}
for name in ("diabetes", "churn"):
    project = load_project(root / "models" / name)
    context, _ = assemble(out / name, "model.skops", b"stand-in artifact", {"model_name": name, "version": 1},
                          serving_requirements(), serving_spec=project.spec.serving_dict(),
                          package=package_sources(project.folder), package_index="https://pypi.org/simple")
    files = {}
    for path in sorted(p for p in context.path.rglob("*") if p.is_file()):
        relative = path.relative_to(context.path).as_posix()
        platform_code = relative.startswith("project/mlops_assets/")
        if platform_code and not relative.endswith("serving-spec.json") and "project-package" not in relative:
            continue
        files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    found[name] = files
    if build and name == "diabetes":
        (context.path / "project" / "mlops_assets" / "cache_buster.txt").write_text(uuid.uuid4().hex)
        engine = find_engine(("podman",))
        tag = f"localhost/mlops-bench-context:{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        built = engine.run(*engine.build_args(tag, engine.python_base(), context.path), timeout=1800)
        found["build_s"] = time.perf_counter() - started if built.returncode == 0 else None
        engine.run("image", "rm", "--force", tag, timeout=120)
print(json.dumps(found))
"""


def side(folder: Path, out: Path, build: bool) -> dict:
    done = subprocess.run(
        [str(folder / ".venv" / "bin" / "python"), "-c", _SIDE, str(out), "build" if build else "files"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default="HEAD")
    parser.add_argument("--build", type=int, default=0, help="rounds of cold project-layer builds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="context-compare-") as scratch:
        sides = {}
        try:
            sides = {commit: worktree(Path(scratch), commit) for commit in (args.before, args.after)}
            found = {c: side(f, Path(scratch) / f"ctx-{i}", False) for i, (c, f) in enumerate(sides.items())}
            before, after = found[args.before], found[args.after]
            for name in PROJECTS:
                differ = sorted(
                    f
                    for f in set(before[name]) | set(after[name])
                    if before[name].get(f) != after[name].get(f)
                )
                same = len(set(before[name]) & set(after[name])) - len(differ)
                print(f"{name}: {same} files the same, differing: {', '.join(differ) or 'none'}")
            for round_ in range(1, args.build + 1):
                for i, (commit, folder) in enumerate(sides.items()):
                    built = side(folder, Path(scratch) / f"build-{round_}-{i}", True)["build_s"]
                    print(f"round {round_}: {commit} diabetes image, project layer cold: {built:.1f} s")
        finally:
            for folder in sides.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
