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
from mlops_assets.runner.environments import ProjectEnvironmentError, project_python, version_python


class ModelProjectResource(dg.ConfigurableResource):
    folder: str = Field(description="The model project folder (project.toml, model.py).")
    python_executable: str = Field(
        default=sys.executable,
        description="The project's interpreter: its runner (evaluation, smoke rows, batch scoring, "
        "seed data) runs in it.",
    )

    environments_dir: str = Field(
        default="", description="Where a project with [environment] requirements gets its environment."
    )
    package_index: str = Field(
        default="https://pypi.org/simple", description="Where a project's own packages come from."
    )

    @property
    def _environments(self) -> Path:
        return Path(self.environments_dir) if self.environments_dir else Path(self.folder) / ".environments"

    def python(self, project: ModelProject | None = None) -> str:
        """The interpreter that runs the project's code: its own environment (the platform's train
        group and its lock, made on first use) if it declares requirements, else python_executable."""
        return self.own_python(project or self.get()) or self.python_executable

    def own_python(self, project: ModelProject) -> str | None:
        """The interpreter of the project's own environment; None for a project that declares no
        requirements (whatever runs its code keeps its own interpreter)."""
        if not project.spec.environment.requirements:
            return None
        try:
            return project_python(project, self._environments, self.package_index)
        except ProjectEnvironmentError as exc:
            raise dg.Failure(str(exc)) from None

    def get(self) -> ModelProject:
        """The project, checked whole without running it; a broken one fails the step naming file and key."""
        try:
            return current_project(Path(self.folder))
        except ProjectError as exc:
            raise dg.Failure(str(exc)) from None

    def runner(self) -> ProjectRunner:
        """This process's warm runner for the project's folder as it is now (a candidate's code)."""
        return runner_for(Path(self.folder), self.python())

    def version_runner(self, manifest: dict | None) -> ProjectRunner:
        """The warm runner for a registered version's own package (its manifest's)."""
        try:
            python = version_python(manifest, self._environments, self.package_index, self.python_executable)
        except ProjectEnvironmentError as exc:
            raise dg.Failure(str(exc)) from None
        return runner_for_version(manifest, Path(self.folder), python)
