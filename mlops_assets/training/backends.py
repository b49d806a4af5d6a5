"""Where train.py runs: a backend behind one small interface, picked by the profile."""

from __future__ import annotations

import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.project.loader import ModelProject
from mlops_assets.settings import child_environment
from mlops_assets.training.train import FAILURE

TRAIN_SCRIPT = Path(__file__).with_name("train.py")


class TrainingBackend(dg.ConfigurableResource, ABC):
    """Runs train.py through Dagster Pipes and returns what it reported."""

    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def run_training(
        self,
        context: dg.AssetExecutionContext,
        extras: dict[str, Any],
        project: ModelProject,
        python: str | None = None,
    ) -> dict[str, Any]:
        """Run train.py with ``extras`` and the project's folder where the script can read it,
        by ``python`` (the project's environment) where the backend runs it on this machine."""


def run_pipes_subprocess(
    context: dg.AssetExecutionContext, command: list[str], extras: dict[str, Any]
) -> dg.PipesClientCompletedInvocation:
    """``command`` in a Pipes session, as ``dg.PipesSubprocessClient`` runs it but with an
    allow-listed environment: that client gives the child the whole of ``os.environ``, so every
    credential of the orchestrator's would reach train.py."""
    with dg.open_pipes_session(
        context=context,
        context_injector=dg.PipesTempFileContextInjector(),
        message_reader=dg.PipesTempFileMessageReader(),
        extras=extras,
    ) as session:
        process = subprocess.Popen(
            command, env=child_environment(**session.get_bootstrap_env_vars()), stdin=subprocess.DEVNULL
        )
        try:
            code = process.wait()
        except BaseException:  # the run was cancelled or interrupted: let train.py stop cleanly
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    # Read after the session closed: its messages are all in by then.
    invocation = dg.PipesClientCompletedInvocation(session)
    if code != 0:
        said = [m[FAILURE] for m in invocation.get_custom_messages() if isinstance(m, dict) and FAILURE in m]
        why = f": {said[-1]}" if said else " (its output is in the step's logs)"
        raise dg.Failure(f"{Path(command[-1]).name} exited with {code}{why}")
    return invocation


class SubprocessTrainingBackend(TrainingBackend):
    """train.py as a local subprocess in a Pipes session, given an allow-listed environment."""

    python_executable: str = Field(
        default=sys.executable, description="Interpreter that runs train.py (needs its imports)."
    )

    @property
    def backend_name(self) -> str:
        return "local-subprocess"

    def run_training(
        self,
        context: dg.AssetExecutionContext,
        extras: dict[str, Any],
        project: ModelProject,
        python: str | None = None,
    ) -> dict[str, Any]:
        invocation = run_pipes_subprocess(
            context,
            [python or self.python_executable, str(TRAIN_SCRIPT)],
            {**extras, "project_dir": str(project.folder)},
        )
        reported = invocation.get_materialize_result()
        return {key: value.value for key, value in reported.metadata.items()}
