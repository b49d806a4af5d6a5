"""Requests failed while production is replaced under load: ours against a stop-then-start peer.

Run: .venv/bin/python bench/swap_under_load.py [--duration 20] [--connections 32] [--runtime container]

Production runs on the local target under its supervisor: one `mlops-assets serve` from the
context's venv (--runtime process), or a podman container of the release's image (--runtime
container; needs `make container-base`). wrk keeps posting 1-row requests on keep-alive
connections for the whole run while the release replaces production every few seconds:
  model swap         — processes, same serving code, new model: the running service swaps it in;
  process handover   — processes, new serving code: a new supervisor takes over the listening
                       socket, the old service drains;
  container handover — containers, another image: the same, with the new image's container.
The peer does what a plain restart does (stop, then start the new one on the port). Prints
requests, non-2xx, socket errors and the seconds each replacement took. Only 127.0.0.1 is used.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quick import parse_args  # noqa: E402
from bench.scoring import free_port, post_script  # noqa: E402
from mlops_assets.hosting.engines import Engine  # noqa: E402
from mlops_assets.hosting.processes import LocalTarget  # noqa: E402
from mlops_assets.hosting.runtimes import ContainerRuntime, ProcessRuntime  # noqa: E402
from mlops_assets.release.build_context import assemble, serving_requirements  # noqa: E402
from mlops_assets_tests.serving_support import SAMPLE, write_release  # noqa: E402

KEY = "bench-key"


def contexts(work: Path, images: bool) -> dict[str, tuple[Path, str]]:
    """Each version's build context, and its image when asked (podman builds it)."""
    from mlops_assets.release.builders import LocalImageBuilder

    built = {}
    requirements = serving_requirements()
    for version, alpha in (("1", 0.5), ("2", 50.0)):
        folder = work / f"release-{version}"
        write_release(folder, int(version), alpha)
        manifest = json.loads((folder / "manifest.json").read_text())
        context, _ = assemble(
            work / "contexts", "model.skops", (folder / "model.skops").read_bytes(), manifest, requirements
        )
        image = f"scoring:{version}"
        if images:
            build = LocalImageBuilder(engines=["podman"]).build(context, "mlops-assets/bench-scoring")
            if not build.image_id:
                raise SystemExit(f"no image for version {version}: {build.detail}")
            image = build.image_id
        built[version] = (context.path, image)
    return built


def wrk(url: str, connections: int, duration: int, script: Path, into: dict) -> None:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), f"{url}/score"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    into["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    into["non2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    into["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )


def run(way: str, work: Path, built: dict, connections: int, duration: int, container: bool) -> dict:
    home = work / way
    target = LocalTarget(home)
    runtime = ContainerRuntime(Engine("podman")) if container else ProcessRuntime(home)
    port = free_port()
    context, image = built["1"]
    target.release("production", context, "code-0", "1", image, port, runtime=runtime)
    body = work / "body.json"
    body.write_text(json.dumps(SAMPLE))
    script = post_script(work, body, {"Authorization": f"Bearer {KEY}"})
    figures: dict = {"way": way, "replacements": []}
    load = threading.Thread(
        target=wrk, args=(f"http://127.0.0.1:{port}", connections, duration, script, figures)
    )
    load.start()
    time.sleep(2)
    deadline = time.monotonic() + duration - 5
    step = 0
    while time.monotonic() < deadline:
        step += 1
        # Alternating: code-0 again (a model swap), then code-1 (a handover), code-1 (swap), ...
        version, code = ("2" if step % 2 else "1"), f"code-{step // 2}"
        started = time.monotonic()
        context, image = built[version]
        if way == "ours":
            _, mode = target.release("production", context, code, version, image, port, runtime=runtime)
        else:
            target.stop("production")
            target.deploy("production", context, version, image, port, runtime=runtime)
            mode = "stop, then start"
        figures["replacements"].append((mode, round(time.monotonic() - started, 2)))
        time.sleep(2.5)
    load.join()
    target.stop("production")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runtime", choices=("process", "container"), default="process")
    args = parse_args(parser, duration=4, connections=8)
    work = Path(tempfile.mkdtemp(prefix="mlops-swap-"))
    os.environ["MLOPS_SCORING_KEYS"] = KEY
    os.environ["MLOPS_HOME"] = str(work / "home")  # the containers' request log lands under it
    container = args.runtime == "container"
    built = contexts(work, images=container)
    print(f"runtime: {args.runtime}")
    for way in ("ours", "restart-peer"):
        figures = run(way, work, built, args.connections, args.duration, container)
        failed = figures["non2xx"] + sum(figures["socket_errors"].values())
        print(
            f"{way:13s} requests {figures['requests']:>8,}  failed {failed:>6,}  "
            f"(non-2xx {figures['non2xx']}, socket errors {figures['socket_errors'] or 'none'})"
        )
        for mode, seconds in figures["replacements"]:
            print(f"{'':13s}   {mode}: {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
