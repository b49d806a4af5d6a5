"""Scoring throughput: our service against the servers a user would pick instead, in one run.

Run: make bench-scoring   (or .venv/bin/python bench/scoring.py [--duration 10] [--rounds 3]
[--only ours,bare-starlette] [--projects diabetes,churn])

Both shipped model projects are served: diabetes (StandardScaler+Ridge, ten numbers, rows as
arrays) and churn (a ColumnTransformer into a logistic regression, every feature kind, rows by
name). Every server gets the same fitted model and 2 workers, on 127.0.0.1 only; ours runs with
every feature on (bearer auth, the project's spec, metrics, request log). The reference is
``bench/bare_starlette.py``: one Starlette route, orjson in and out, the diabetes model folded
into one affine map, the churn model's ``predict_proba``. For information, ``bench/bare_asgi.py``
computes the same answer with Starlette taken out (raw ASGI): how much of a latency tail belongs
to this machine rather than to a service. Product peers (Azure ML's inference server, MLflow,
MLServer) serve the diabetes project. Each server's predictions are checked against the model's
before it is timed. Load comes from wrk (Debian package `wrk`), bounded
runs: 1-row and 100-row payloads at 16 and 64 connections. Peers live in their own venvs under
bench/.venvs (their pins conflict with our lock).
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.projects import PROJECTS, BenchProject, bench_projects  # noqa: E402
from bench.quick import parse_args  # noqa: E402
from mlops_assets_tests.serving_support import process_tree  # noqa: E402
from mlops_assets_tests.webhook import TelemetryReceiver  # noqa: E402

VENVS = REPO / "bench" / ".venvs"
UV = Path(sys.executable).parent / "uv"
OUR_BIN = Path(sys.executable).parent
KEY = "bench-key"
TELEMETRY = TelemetryReceiver().__enter__()  # the ingestion endpoint "ours+appinsights" exports to
# (rows per request, connections, paced: requests/s offered in all, or None: as fast as answered)
SCENARIOS = [(1, 16, None), (1, 64, None), (100, 16, None), (100, 64, None)]
SERVER_ORDER = [
    "ours",
    "ours+appinsights",
    "bare-starlette",
    "bare-onnxruntime",
    "bare-asgi",
    "azureml-inference-server",
    "mlflow-serve",
    "mlflow-serve+uvloop",
    "mlserver",
    "floor",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv(name: str, *requirements: str) -> Path:
    """A venv with exactly these requirements, made once and reused (uv caches the wheels)."""
    path = VENVS / name
    marker = path / ".requirements"
    wanted = "\n".join(requirements)
    if marker.exists() and marker.read_text() == wanted:
        return path
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(path)], check=True)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(path / "bin" / "python"), *requirements], check=True
    )
    marker.write_text(wanted)
    return path


@dataclass
class Server:
    name: str
    command: list[str]
    path: str
    body: Callable[[list[list[float]]], bytes]
    result: Callable[[dict], list[float]]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    health: str = "/"
    up_on_any_answer: bool = False  # bare Starlette has no health route: a 404 means it is up
    answers_the_model: bool = True  # the floor answers a constant: nothing to check


def result(answer: dict) -> list:
    return answer["result"]


def probabilities_by_label(answer: dict) -> list[list[float]]:
    """Ours answers one object per row, label to probability, in the model's class order."""
    return [list(row.values()) for row in answer["probabilities"]]


def probability_matrix(answer: dict) -> list[list[float]]:
    return answer["probabilities"]


def plain_body(rows):
    return json.dumps({"data": rows}).encode()


def build_servers(work: Path, bench: BenchProject, names: set[str]) -> list[Server]:
    import joblib

    from mlops_assets.model.rows import SPEC_NAME

    work = work / bench.name
    release = work / "release"
    compiled = bench.write_release(release)
    print(
        f"{bench.name}: {'compiled, ' + compiled['inputs'] + ' of ' + compiled['numbers'] if 'file' in compiled else 'not compiled: ' + compiled['reason']}",
        flush=True,
    )
    spec = work / SPEC_NAME
    spec.write_text(json.dumps(bench.project.spec.serving_dict()))
    joblib.dump(bench.model, work / "model.joblib")
    sklearn_pins = ("scikit-learn==1.9.1", "numpy<2.5")
    servers: list[Server] = []
    port = free_port
    ours_result, bare_result = (
        (probabilities_by_label, probability_matrix) if bench.classifier else (result, result)
    )

    for name in ("ours", "ours+appinsights"):
        if name not in names:
            continue
        p = port()
        env = {
            "MLOPS_HOME": str(work / f"home-{name}"),
            "MLOPS_SCORING_KEYS": KEY,
            "MLOPS_SERVING_SPEC": str(spec),
            "PYTHONPATH": bench.library_path,  # the artifact's own library (LightGBM), if any
        }
        if name == "ours+appinsights":
            # Telemetry on, with the distro's defaults (5 traces/s sampled, metrics every 60 s),
            # exported to an Application Insights ingestion endpoint on 127.0.0.1.
            env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = TELEMETRY.connection_string
        servers.append(
            Server(
                name,
                [
                    str(OUR_BIN / "mlops-assets"),
                    "serve",
                    "--model-dir",
                    str(release),
                    "--port",
                    str(p),
                    "--workers",
                    "2",
                ],
                f"http://127.0.0.1:{p}/score",
                plain_body,
                ours_result,
                env=env,
                headers={"Authorization": f"Bearer {KEY}", "x-mlops-synthetic": "true"},
                health="/health/ready",
            )
        )
    for name, module, flags in (
        ("bare-starlette", "bench.bare_starlette:app", []),
        ("bare-onnxruntime", "bench.bare_onnxruntime:app", []),
        ("bare-asgi", "bench.bare_asgi:app", ["--lifespan", "off"]),  # for information
        ("floor", "bench.constant_asgi:app", ["--lifespan", "off"]),
    ):
        if name not in names or (name == "bare-onnxruntime" and "file" not in compiled):
            continue
        p = port()
        uvicorn = [str(OUR_BIN / "uvicorn"), module, "--port", str(p), "--workers", "2", *flags]
        servers.append(
            Server(
                name,
                [*uvicorn, "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
                f"http://127.0.0.1:{p}/score",
                plain_body,
                bare_result,
                env={
                    "BENCH_MODEL": str(work / "model.joblib"),
                    "BENCH_GRAPH": str(release / compiled.get("file", "")),
                    "BENCH_MANIFEST": str(release / "manifest.json"),
                    "BENCH_CATEGORIES": json.dumps(bench.project.spec.native_categories),
                    "BENCH_LIBRARY_PATH": bench.library_path,
                    # One thread per worker, as ours runs onnxruntime: a histogram gradient
                    # boosting's predict otherwise spins OpenMP threads on every core for each
                    # 1-row request (~100 req/s here instead of ~1,500).
                    "OMP_NUM_THREADS": "1",
                    # As `mlops-assets serve` runs its workers (serving/server.py): each accept
                    # hands one connection to a worker, so connections spread evenly over both.
                    "UV_TCP_SINGLE_ACCEPT": "1",
                },
                cwd=REPO,
                up_on_any_answer=True,
                answers_the_model=name != "floor",
            )
        )
    if bench.classifier:
        return sorted(servers, key=lambda s: SERVER_ORDER.index(s.name))  # peers serve diabetes only
    if "azureml-inference-server" in names:
        env_dir = venv("azureml", "azureml-inference-server-http==1.5.1", "skops==0.16.0", *sklearn_pins)
        from mlops_assets.release.aml_code import write_code_folder

        code = write_code_folder(work / "aml-code")
        p = port()
        servers.append(
            Server(
                "azureml-inference-server",
                [str(env_dir / "bin" / "azmlinfsrv"), "--entry_script", "score.py", "--port", str(p)],
                f"http://127.0.0.1:{p}/score",
                plain_body,
                result,
                env={
                    "AZUREML_MODEL_DIR": str(release),
                    "WORKER_COUNT": "2",
                    "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}",
                },
                cwd=code,
            )
        )
    mlflow_model = work / "mlflow-model"
    if names & {"mlflow-serve", "mlflow-serve+uvloop"}:
        import mlflow.sklearn

        mlflow.sklearn.save_model(bench.model, str(mlflow_model))
    for name, env_dir in (
        ("mlflow-serve", "mlflow-plain"),
        ("mlflow-serve+uvloop", "mlflow-uvicorn-standard"),
    ):
        if name not in names:
            continue
        extra = ("uvicorn[standard]",) if name.endswith("uvloop") else ()
        env_path = venv(env_dir, "mlflow==3.17.2", *sklearn_pins, *extra)
        p = port()
        servers.append(
            Server(
                name,
                [
                    str(env_path / "bin" / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    str(mlflow_model),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(p),
                    "--workers",
                    "2",
                    "--env-manager",
                    "local",
                ],
                f"http://127.0.0.1:{p}/invocations",
                lambda rows: json.dumps({"inputs": rows}).encode(),
                lambda r: r["predictions"],
                env={"PATH": f"{env_path / 'bin'}:{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true"},
                health="/ping",
            )
        )
    if "mlserver" in names:
        env_path = venv(
            "mlserver", "mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22", *sklearn_pins
        )
        folder = work / "mlserver"
        (folder / "diabetes").mkdir(parents=True)
        shutil.copy(work / "model.joblib", folder / "diabetes" / "model.joblib")
        (folder / "diabetes" / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": "diabetes",
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"},
                }
            )
        )
        p = port()
        (folder / "settings.json").write_text(
            json.dumps(
                {
                    "http_port": p,
                    "grpc_port": port(),
                    "metrics_port": port(),
                    "parallel_workers": 2,
                    "host": "127.0.0.1",
                }
            )
        )

        def v2_body(rows):
            flat = [value for row in rows for value in row]
            return json.dumps(
                {
                    "inputs": [
                        {
                            "name": "predict",
                            "shape": [len(rows), len(rows[0])],
                            "datatype": "FP64",
                            "data": flat,
                        }
                    ]
                }
            ).encode()

        servers.append(
            Server(
                "mlserver",
                [str(env_path / "bin" / "mlserver"), "start", str(folder)],
                f"http://127.0.0.1:{p}/v2/models/diabetes/infer",
                v2_body,
                lambda r: r["outputs"][0]["data"],
                env={"PATH": f"{env_path / 'bin'}:{os.environ['PATH']}"},
                health="/v2/health/ready",
            )
        )
    return sorted(servers, key=lambda s: SERVER_ORDER.index(s.name))


def rss_mb(pid: int) -> list[float]:
    """RSS of the process and all its descendants, in MB, largest first."""
    sizes = []
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        if match:
            sizes.append(int(match.group(1)) / 1024)
    return sorted(sizes, reverse=True)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time these processes have used."""
    ticks = 0
    for current in pids:
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def scenario_name(rows: int, connections: int, paced: int | None) -> str:
    return f"{rows}r@{connections}c" + (f"/{paced}rps" if paced else "")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def post_script(work: Path, body_file: Path, headers: dict[str, str], pause_ms: float | None = None) -> Path:
    """A wrk Lua script that POSTs the file's bytes as JSON with these headers; with ``pause_ms``,
    each connection waits about that long after an answer before its next request (wrk's latency
    leaves the pause out)."""
    script = work / "post.lua"
    headers = {"Content-Type": "application/json", **headers}
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
        # Drawn afresh each time (uniform, its mean ``pause_ms``): connections that all began at
        # once would otherwise stay in step and arrive as one burst after another.
        + (f"function delay() return math.random() * {2 * pause_ms:.3f} end\n" if pause_ms else "")
    )
    return script


def run_wrk(
    server: Server,
    body: bytes,
    connections: int,
    duration: int,
    work: Path,
    pid: int | None = None,
    paced: int | None = None,
) -> dict:
    """wrk's figures, its own CPU use (cores) and, given the server's ``pid``, the server's CPU
    microseconds per request answered (its processes' user+system time): steadier than req/s
    on a shared machine, where a neighbour's load moves throughput from one run to the next.
    ``paced``: about that many requests a second in all (each connection pausing between its
    requests), so every server gets the same load and the tail is its own, not a queue's."""
    body_file = work / "body.json"
    body_file.write_bytes(body)
    script = post_script(work, body_file, server.headers, connections * 1000 / paced if paced else None)
    tree = process_tree(pid) if pid else []
    server_before = cpu_seconds(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), server.path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = wrk_figures(out)
    server_cpu = cpu_seconds(tree) - server_before
    return {
        **figures,
        "wrk_cpu": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / duration,
        "cpu_us": server_cpu / max(figures["requests"], 1) * 1e6 if tree else float("nan"),
    }


def wrk_post(url: str, script: Path, connections: int, duration: int) -> dict:
    """`wrk -t2 --latency` POSTing with ``script`` to ``url``/score: its figures."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), f"{url}/score"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return wrk_figures(out)


def wrk_figures(out: str) -> dict:
    """Requests answered and per second, p50 and p99 (ms), non-2xx and socket errors from the
    output of `wrk --latency`."""
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(latency["50"]),
        "p99": _ms(latency["99"]),
        "non2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "refused": int(errors.group(1)) if errors else 0,  # connect errors: nobody accepted
    }


def start(server: Server, work: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")} | server.env
    log = open(work / f"{server.name}.log", "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        server.command,
        env=env,
        cwd=server.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    health = re.sub(r"(http://[^/]+).*", r"\1", server.path) + server.health
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {(work / f'{server.name}.log').read_text()[-2000:]}")
        try:
            status = httpx.get(health, timeout=1).status_code
            if status == 200 or (server.up_on_any_answer and status < 500):
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{server.name} did not become healthy")


def drop_request_logs(folder: Path) -> None:
    """The request logs our service wrote: ~70 MB/s at 100-row requests, gigabytes in a run."""
    for logs in folder.glob("home-*/**/scoring-logs"):
        if "spill" not in logs.parts:  # what storage refused stays: nothing is lost on purpose
            shutil.rmtree(logs, ignore_errors=True)


def medians(runs: list[dict]) -> dict:
    """Each number's median over the runs; the RSS of the median run by throughput."""
    middle = len(runs) // 2
    summary = {key: sorted(run[key] for run in runs)[middle] for key in runs[0] if key != "rss"}
    summary["rss"] = sorted(runs, key=lambda run: run["rps"])[middle]["rss"]
    return summary


def predictions_match(bench: BenchProject, server: Server) -> bool:
    """Whether the server answers the 100-row request with the model's own numbers (asserted),
    within the compiled graph's stated tolerance where the release has one."""
    from mlops_assets.model.compiled import PROBABILITY_ATOL, REGRESSION_RTOL

    if not server.answers_the_model:
        return True
    check = httpx.post(
        server.path,
        content=server.body(bench.payloads[100]),
        headers={"Content-Type": "application/json", **server.headers},
        timeout=30,
    )
    if check.status_code != 200:
        print(
            f"{bench.name}/{server.name}: prediction check failed, not timed: {check.status_code} {check.text[:300]}",
            flush=True,
        )
        return False
    got = np.asarray(server.result(check.json()), dtype=float)
    rtol, atol = (REGRESSION_RTOL, PROBABILITY_ATOL) if bench.compiled else (1e-9, 1e-12)
    np.testing.assert_allclose(got.ravel(), bench.expected(bench.payloads[100]).ravel(), rtol=rtol, atol=atol)
    return True


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per server and scenario; the median is reported"
    )
    parser.add_argument(
        "--only",
        default=",".join(SERVER_ORDER),
        help="comma-separated subset of: " + ", ".join(SERVER_ORDER),
    )
    parser.add_argument(
        "--projects", default=",".join(PROJECTS), help="comma-separated subset of: " + ", ".join(PROJECTS)
    )
    parser.add_argument(
        "--paced",
        type=int,
        metavar="REQ_PER_S",
        help="also offer 1-row requests at about this rate in all over 64 connections, and 100-row "
        "ones at a tenth of it, the same to every server: p99 at a load each sustains, not a queue's length",
    )
    parser.add_argument(
        "--paced-seconds",
        type=int,
        metavar="SECONDS",
        help="seconds per paced run (default: --duration): at 200 req/s, 4 s holds 800 requests and "
        "its p99 is the 8th slowest; 30 s rests it on 60",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also serve a constant answer (bench/constant_asgi.py): the floor",
    )
    args = parse_args(parser, duration=1, warmup=1, rounds=1, only="ours,bare-starlette")
    chosen = set(args.only.split(",")) | ({"floor"} if args.floor else set())
    scenarios = SCENARIOS + ([(1, 64, args.paced), (100, 64, args.paced // 10)] if args.paced else [])
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-scoring-"))
    runs: dict[tuple[str, str], dict[tuple[int, int], list[dict]]] = {}
    planned = [
        (bench, server)
        for index, bench in enumerate(bench_projects(args.projects.split(",")))
        # The floor answers no model: served once, beside the first project.
        for server in build_servers(work, bench, chosen if index == 0 else chosen - {"floor"})
    ]
    # Every server stays up (idle ones cost no CPU) and each scenario's runs alternate between
    # them, round after round: a slow minute of this shared machine hits them all alike.
    processes: dict[tuple[str, str], subprocess.Popen] = {}
    try:
        for bench, server in planned:
            process = start(server, work / bench.name)
            processes[(bench.name, server.name)] = process
            if not predictions_match(bench, server):
                stop(process)
                del processes[(bench.name, server.name)]
        for _ in range(args.rounds):
            for rows, connections, paced in scenarios:
                for bench, server in planned:
                    process = processes.get((bench.name, server.name))
                    if process is None:
                        continue
                    body = server.body(bench.payloads[rows])
                    run_wrk(server, body, connections, args.warmup, work, paced=paced)
                    seconds = (args.paced_seconds or args.duration) if paced else args.duration
                    figures = run_wrk(server, body, connections, seconds, work, process.pid, paced)
                    figures["rss"] = rss_mb(process.pid)
                    drop_request_logs(work / bench.name)
                    runs.setdefault((bench.name, server.name), {}).setdefault(
                        (rows, connections, paced), []
                    ).append(figures)
                    print(
                        f"{bench.name + '/' + server.name:<34} {scenario_name(rows, connections, paced):>14} {figures['rps']:>9.0f} req/s  p50 {figures['p50']:.2f} ms  p99 {figures['p99']:.2f} ms  cpu {figures['cpu_us']:.0f} us/req  non-2xx {figures['non2xx']}  wrk cpu {figures['wrk_cpu']:.2f}",
                        flush=True,
                    )
    finally:
        for process in processes.values():
            stop(process)

    # Each figure's median over the rounds, per server and scenario.
    results = {key: {scenario: medians(found) for scenario, found in by.items()} for key, by in runs.items()}
    paced_runs = f" ({args.paced_seconds} s paced)" if args.paced and args.paced_seconds else ""
    print(f"\nmedians of {args.rounds} round(s) of {args.duration} s each{paced_runs}")
    print(
        f"\n{'project/server':<34}{'payload':>16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'non-2xx':>9}{'RSS MB (max proc / total)':>28}{'ours/this':>11}{'p99 ours/this':>15}"
    )
    for (project, name), by_scenario in results.items():
        for (rows, connections, paced), f in by_scenario.items():
            ours = results.get((project, "ours"), {}).get((rows, connections, paced))
            # Paced, every server is offered the same load: only the tail compares.
            ratio = (
                f"{ours['rps'] / f['rps']:.2f}x" if ours and name != "ours" and not paced and f["rps"] else ""
            )
            tail = f"{ours['p99'] / f['p99']:.2f}x" if ours and name != "ours" and f["p99"] else ""
            rss = f"{f['rss'][0]:.0f} / {sum(f['rss']):.0f}"
            print(
                f"{project + '/' + name:<34}{scenario_name(rows, connections, paced):>16}{f['rps']:>10.0f}{f['p50']:>9.2f}{f['p99']:>9.2f}{f['cpu_us']:>12.0f}{f['non2xx'] + f['socket_errors']:>9}{rss:>28}{ratio:>11}{tail:>15}"
            )
    if any(name == "ours+appinsights" for _, name in results):
        kinds = Counter(e.get("data", {}).get("baseType") for e in TELEMETRY.envelopes)
        print(f"\nApplication Insights envelopes received from ours+appinsights: {dict(kinds)}")
    shutil.rmtree(work, ignore_errors=True)
    print("\nwrk ran on the same 2 cores (its CPU use, in cores, is printed per run above).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
