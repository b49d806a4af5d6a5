"""The model project as a Dagster resource: the UI shows which folder a run followed, and its code
runs only in the project runner (never in this process)."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.project.loader import ModelProject, current_project
from mlops_assets.project.spec import ProjectError
from mlops_assets.runner.client import ProjectRunner, runner_for, runner_for_version


class ModelProjectResource(dg.ConfigurableResource):
    folder: str = Field(description="The model project folder (project.toml, model.py).")
    python_executable: str = Field(
        default=sys.executable,
        description="The project's interpreter: its runner (evaluation, smoke rows, batch scoring, "
        "seed data) runs in it.",
    )

    def get(self) -> ModelProject:
        """The project, checked whole without running it; a broken one fails the step naming file and key."""
        try:
            return current_project(Path(self.folder))
        except ProjectError as exc:
            raise dg.Failure(str(exc)) from None

    def runner(self) -> ProjectRunner:
        """This process's warm runner for the project's folder as it is now (a candidate's code)."""
        return runner_for(Path(self.folder), self.python_executable)

    def version_runner(self, manifest: dict | None) -> ProjectRunner:
        """The warm runner for a registered version's own package (its manifest's)."""
        return runner_for_version(manifest, Path(self.folder), self.python_executable)
