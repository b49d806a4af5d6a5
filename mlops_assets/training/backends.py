"""Where train.py runs: a backend behind one small interface, picked by the profile."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

TRAIN_SCRIPT = Path(__file__).with_name("train.py")


class TrainingBackend(dg.ConfigurableResource, ABC):
    """Runs train.py through Dagster Pipes and returns what it reported."""

    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def run_training(self, context: dg.AssetExecutionContext, extras: dict[str, Any]) -> dict[str, Any]: ...


class SubprocessTrainingBackend(TrainingBackend):
    """train.py as a local subprocess (``dg.PipesSubprocessClient``)."""

    python_executable: str = Field(
        default=sys.executable, description="Interpreter that runs train.py (needs its imports)."
    )

    @property
    def backend_name(self) -> str:
        return "local-subprocess"

    def run_training(self, context: dg.AssetExecutionContext, extras: dict[str, Any]) -> dict[str, Any]:
        invocation = dg.PipesSubprocessClient().run(
            context=context, command=[self.python_executable, str(TRAIN_SCRIPT)], extras=extras
        )
        reported = invocation.get_materialize_result()
        return {key: value.value for key, value in reported.metadata.items()}


class TrainingParams(dg.ConfigurableResource):
    alpha: float = Field(default=0.5, gt=0, description="Ridge regularisation strength.")
    holdout_percent: int = Field(
        default=20,
        gt=0,
        lt=100,
        description="Share of rows (by content hash) held out for metrics.",
    )
