"""The model project as a Dagster resource: the UI shows which folder a run followed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.project.loader import ModelProject, current_project
from mlops_assets.project.spec import ProjectError


class ModelProjectResource(dg.ConfigurableResource):
    folder: str = Field(description="The model project folder (project.toml, model.py).")

    def get(self) -> ModelProject:
        """The project, checked whole; a broken one fails the step naming file and key."""
        try:
            return current_project(Path(self.folder))
        except ProjectError as exc:
            raise dg.Failure(str(exc)) from None
