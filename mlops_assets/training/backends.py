"""Where train.py runs: a backend behind one small interface, picked by the profile."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.project.loader import ModelProject

TRAIN_SCRIPT = Path(__file__).with_name("train.py")


class TrainingBackend(dg.ConfigurableResource, ABC):
    """Runs train.py through Dagster Pipes and returns what it reported."""

    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def run_training(
        self, context: dg.AssetExecutionContext, extras: dict[str, Any], project: ModelProject
    ) -> dict[str, Any]:
        """Run train.py with ``extras`` and the project's folder where the script can read it."""


class SubprocessTrainingBackend(TrainingBackend):
    """train.py as a local subprocess (``dg.PipesSubprocessClient``)."""

    python_executable: str = Field(
        default=sys.executable, description="Interpreter that runs train.py (needs its imports)."
    )

    @property
    def backend_name(self) -> str:
        return "local-subprocess"

    def run_training(
        self, context: dg.AssetExecutionContext, extras: dict[str, Any], project: ModelProject
    ) -> dict[str, Any]:
        invocation = dg.PipesSubprocessClient().run(
            context=context,
            command=[self.python_executable, str(TRAIN_SCRIPT)],
            extras={**extras, "project_dir": str(project.folder)},
        )
        reported = invocation.get_materialize_result()
        return {key: value.value for key, value in reported.metadata.items()}
