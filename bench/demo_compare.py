"""`make demo` from nothing at two commits, side by side: each in a worktree of its own (installed
from uv's cache), run alternately in fresh homes, so the before/after figures share the machine.

Read the first release's image build with care: a commit whose code an image on this machine
already holds (another home's release, a test's) finds its ``COPY project/`` layer cached and builds
3-4 s faster than one never built (seen comparing c775262 with its successor: the whole gap was
there; with that layer cold for both, the two built in the same 5.5-5.8 s).

Run: .venv/bin/python bench/demo_compare.py BEFORE [AFTER] [--rounds N] [--quick]
(AFTER defaults to HEAD; the worktrees and homes go to a temporary folder and are removed.)
"""

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worktree(scratch: Path, commit: str) -> Path:
    folder = scratch / commit.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "-f", "-q", str(folder), commit], cwd=REPO, check=True)
    (folder / ".tools").symlink_to(REPO / ".tools")  # the same uv: installs come from its cache
    subprocess.run(["make", "install"], cwd=folder, check=True, capture_output=True)
    return folder


def demo(folder: Path, home: Path, port: int) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
    env |= {"MLOPS_HOME": str(home), "MLOPS_PRODUCTION_PORT": str(port), "MLOPS_QA_PORT": str(port + 1)}
    started = time.perf_counter()
    done = subprocess.run(["make", "demo"], cwd=folder, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    subprocess.run([str(folder / ".venv/bin/mlops-assets"), "clean"], env=env, capture_output=True)
    said = re.search(r"Done in (\d+) s", done.stdout)
    return took, f"rc {done.returncode}, its own 'Done in' {said[1] if said else '-'} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round: checks the script works")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="demo-compare-") as scratch:
        sides = {}
        try:
            sides = {
                name: worktree(Path(scratch), commit)
                for name, commit in (("before", args.before), ("after", args.after))
            }
            for round_ in range(1, rounds + 1):
                for name, folder in sides.items():
                    took, detail = demo(folder, Path(scratch) / f"home-{name}-{round_}", 18100 + 10 * round_)
                    print(f"{name} ({getattr(args, name)}) round {round_}: make demo {took:.1f} s ({detail})")
        finally:
            for folder in sides.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
