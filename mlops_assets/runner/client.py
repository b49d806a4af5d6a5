"""The project runner as the orchestrator uses it: a warm process per project package.

The code location never imports a project's modules or unpickles a fitted project model: it asks
the runner, a subprocess of the project's interpreter with an allow-listed environment (no
storage key, webhook URL or cloud token of the orchestrator's), in a scratch folder of its own.
Frames and artifacts go over as files there; answers come back as JSON. A runner is started on
first use and kept for the process (a run's steps share it); one whose process died is started
again on the next call.
"""

from __future__ import annotations

import atexit
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.model.artifact import ArtifactError
from mlops_assets.model.batch_scoring import BatchInputError
from mlops_assets.project.package import package_digest, sources_digest, sources_of, write_package
from mlops_assets.project.spec import ProjectError
from mlops_assets.runner.worker import SCRATCH_PREFIX
from mlops_assets.settings import child_environment

if TYPE_CHECKING:
    import pandas as pd

WORKER_MODULE = "mlops_assets.runner.worker"
_RAISED_AS = {
    "ArtifactError": ArtifactError,
    "BatchInputError": BatchInputError,
    "ProjectError": ProjectError,
    "ProjectCodeError": ProjectError,
}


class ProjectRunError(RuntimeError):
    """Project code failed in the runner (``kind``: the exception's class there), or the runner died."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Artifact:
    """A fitted model's bytes and what it must be to load: its sha256 and the types it may hold."""

    data: bytes
    sha256: str
    trusted: tuple[str, ...]
    source: str  # named in errors: "version 3", the candidate's URI


class ProjectRunner:
    """One worker process with ``package`` mounted as ``model_project``; calls are one at a time."""

    def __init__(self, package: Path, python: str = sys.executable) -> None:
        self.package, self.python = Path(package).resolve(), python
        self._process: subprocess.Popen | None = None
        self._scratch: Path | None = None
        self._lock = threading.Lock()
        self._names = itertools.count()
        self.pid: int | None = None

    def _start(self) -> subprocess.Popen:
        self.scratch.mkdir(exist_ok=True)  # one per runner, across restarts (a worker that ended removed it)
        process = subprocess.Popen(
            [self.python, "-I", "-m", WORKER_MODULE, str(self.package)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(),
            cwd=self._scratch,
            text=True,
        )
        ready = process.stdout.readline()
        if not ready:
            code = process.wait()
            raise ProjectRunError(f"the project runner for {self.package} exited with {code} as it started")
        self.pid = json.loads(ready)["ready"]
        return process

    @property
    def scratch(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        return self._scratch

    def call(self, task: str, /, **args: Any) -> Any:
        """``task`` run in the worker; its error raised here (an artifact's or project's as those)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start()
            process = self._process
            try:
                process.stdin.write(json.dumps({"task": task, "args": args}) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except BrokenPipeError:
                line = ""
            except BaseException:  # interrupted mid-task: the worker's state is unknown, end it
                self._stop(kill=True)
                raise
            if not line:
                code = process.wait()
                self._process = None
                raise ProjectRunError(
                    f"the project runner for {self.package} exited with {code} during {task} "
                    "(its output is in the log above)"
                )
        answer = json.loads(line)
        if "error" in answer:
            raised = _RAISED_AS.get(answer["kind"])
            if raised is not None:
                raise raised(answer["error"])
            raise ProjectRunError(f"{answer['kind']}: {answer['error']}", answer["kind"])
        return answer["result"]

    def copied_file(self, source: Path) -> Path:
        """A copy of the parquet file ``source`` in the scratch folder, where the worker reads it."""
        path = self.scratch / f"frame-{next(self._names)}.parquet"
        shutil.copyfile(source, path)
        return path

    def frame_file(self, frame: pd.DataFrame) -> Path:
        path = self.scratch / f"frame-{next(self._names)}.parquet"
        frame.to_parquet(path, index=False)
        return path

    def artifact_file(self, artifact: Artifact) -> dict[str, Any]:
        """The artifact written once into the scratch folder, as the worker's tasks take it."""
        path = self.scratch / f"{artifact.sha256}.skops"
        if not path.exists():
            staging = path.with_suffix(".partial")
            staging.write_bytes(artifact.data)
            staging.rename(path)
        return {
            "artifact_path": str(path),
            "sha256": artifact.sha256,
            "trusted": list(artifact.trusted),
            "source": artifact.source,
        }

    # The tasks, typed.
    def check(self, project_dir: Path) -> dict[str, Any]:
        return self.call("check", project_dir=str(project_dir))

    def build(self, project_dir: Path, params: dict, frame: pd.DataFrame | None = None) -> dict[str, str]:
        """``estimator``: build_model(params) as people read it; ``fitted``: what fitting it on
        ``frame`` (the seed data, typed) and a skops round trip came to."""
        if frame is None:
            return self.call("build", project_dir=str(project_dir), params=params)
        path = self.frame_file(frame)
        try:
            return self.call("build", project_dir=str(project_dir), params=params, frame_path=str(path))
        finally:
            path.unlink(missing_ok=True)

    def seed_frame(self, project_dir: Path) -> pd.DataFrame:
        import pandas as pd

        path = self.scratch / f"seed-{next(self._names)}.parquet"
        try:
            self.call("seed", project_dir=str(project_dir), out_path=str(path))
            return pd.read_parquet(path)
        finally:
            path.unlink(missing_ok=True)

    def evaluate(
        self,
        artifact: Artifact,
        task: str,
        features: list[str],
        target: str,
        holdout: Path,
        categories: dict[str, list[str]] | None = None,
        predictions: int = 0,
    ) -> dict[str, Any]:
        """The artifact's metrics on the rows of the parquet file ``holdout`` (as stored: the
        worker makes them what the model takes, ``categories`` being the spec's native ones), and
        the predictions and targets of its first ``predictions`` rows. The rows are read in the
        worker, never here."""
        path = self.copied_file(holdout)
        try:
            return self.call(
                "evaluate",
                artifact=self.artifact_file(artifact),
                task=task,
                features=list(features),
                target=target,
                frame_path=str(path),
                categories=categories,
                predictions=predictions,
            )
        finally:
            path.unlink(missing_ok=True)

    def smoke(self, artifact: Artifact, features: list[str], frame: pd.DataFrame) -> dict[str, list]:
        path = self.frame_file(frame[list(features)])
        try:
            return self.call(
                "smoke", artifact=self.artifact_file(artifact), features=list(features), frame_path=str(path)
            )
        finally:
            path.unlink(missing_ok=True)

    def compile_graph(
        self, artifact: Artifact, serving_spec: dict, holdout: Path
    ) -> tuple[bytes | None, dict]:
        """The artifact compiled to a graph checked against it on the rows of ``holdout`` (a
        parquet file) and rows drawn from the spec: ``(graph, the manifest's compiled block)``, or
        ``(None, {"reason": ...})``."""
        frame = self.copied_file(holdout)
        out = self.scratch / f"graph-{next(self._names)}.onnx"
        try:
            block = self.call(
                "compile_graph",
                artifact=self.artifact_file(artifact),
                serving_spec=serving_spec,
                frame_path=str(frame),
                out_path=str(out),
            )
            return (out.read_bytes() if "reason" not in block else None), block
        finally:
            frame.unlink(missing_ok=True)
            out.unlink(missing_ok=True)

    def verify(self, artifact: Artifact) -> dict[str, Any]:
        return self.call("verify", artifact=self.artifact_file(artifact))

    def score_file(
        self,
        artifact: Artifact,
        manifest: dict,
        serving_spec: dict | None,
        input_path: str,
        output_path: str,
        refused_path: str,
        graph: bytes | None = None,
    ) -> dict[str, Any]:
        """Local paths only: the worker holds no storage credential (the caller stages remote
        files). ``graph``: the version's compiled graph, which the worker verifies and scores with."""
        graph_path = self.scratch / f"graph-{next(self._names)}.onnx" if graph is not None else None
        if graph_path is not None:
            graph_path.write_bytes(graph)
        try:
            return self.call(
                "score_file",
                artifact=self.artifact_file(artifact),
                manifest=manifest,
                serving_spec=serving_spec,
                input_path=input_path,
                output_path=output_path,
                refused_path=refused_path,
                graph_path=str(graph_path) if graph_path is not None else None,
            )
        finally:
            if graph_path is not None:
                graph_path.unlink(missing_ok=True)

    def _stop(self, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


_RUNNERS: dict[tuple[str, str, str], ProjectRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(package: Path, python: str = sys.executable) -> ProjectRunner:
    """The warm runner of this process for ``package`` as its files are now (an edited package
    gets a runner of its own: a worker never serves code it did not start with)."""
    package = Path(package).resolve()
    key = (python, str(package), package_digest(package))
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            stale = [k for k in _RUNNERS if k[:2] == key[:2]]
            for old in stale:
                _RUNNERS.pop(old).close()
            runner = _RUNNERS[key] = ProjectRunner(package, python)
        return runner


_PACKAGES: list[Path] = []  # this process's private folder of versions' packages, made on first use


def package_folder(sources: dict[str, str]) -> Path:
    """``sources`` (a version's package) as a folder of this process's, named by their digest."""
    with _RUNNERS_LOCK:
        if not _PACKAGES:
            _PACKAGES.append(Path(tempfile.mkdtemp(prefix="mlops-packages-")))
        folder = _PACKAGES[0] / sources_digest(sources)
        if not folder.is_dir():
            staging = Path(tempfile.mkdtemp(dir=_PACKAGES[0]))
            write_package(sources, staging).rename(folder)
        return folder


def runner_for_version(
    manifest: dict | None, project_folder: Path, python: str = sys.executable
) -> ProjectRunner:
    """The runner with the package a registered version carries (its manifest's) mounted: it
    loads with the classes it was trained with. The project's folder as it is now only for a
    version registered before manifests carried its package."""
    sources = sources_of(manifest) if manifest else None
    return runner_for(package_folder(sources) if sources else project_folder, python)


@atexit.register
def close_runners() -> None:
    with _RUNNERS_LOCK:
        runners = list(_RUNNERS.values())
        _RUNNERS.clear()
        packages = list(_PACKAGES)
        _PACKAGES.clear()
    for runner in runners:
        runner.close()
    for folder in packages:
        shutil.rmtree(folder, ignore_errors=True)
