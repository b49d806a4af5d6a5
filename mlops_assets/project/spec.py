"""project.toml: what a model project declares, read with tomllib and validated with pydantic.

Every error names the file, the key and what is allowed, e.g.
``models/x/project.toml: features.age.min: min 90 is above max 10``.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops_assets.project.code import SPEC_FILE
from mlops_assets.project.metrics import TASKS, Direction, Task, task_metrics
from mlops_assets.project.rules import Feature

Kind = Literal["numeric", "integer", "categorical", "boolean"]
NUMBER_KINDS = ("numeric", "integer")
PROJECT_NAME = re.compile(r"[A-Za-z0-9_]+")  # whole: fullmatch (a "$" passes a trailing newline)


class ProjectError(ValueError):
    """A model project that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One column of the data: its kind, what it means and the values it may take."""

    kind: Kind
    description: str = ""
    unit: str = ""
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    out_of_range: Literal["reject", "flag"] = Field(
        default="reject", description="reject: the batch fails; flag: it passes, the rows are reported."
    )

    @model_validator(mode="after")
    def _fits_its_kind(self) -> ColumnSpec:
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None and not math.isfinite(value):  # TOML has nan and inf
                raise ValueError(f"{bound} is {value}: a bound is a finite number, or left out")
        if self.kind in NUMBER_KINDS:
            if self.categories is not None:
                raise ValueError(f"categories are for categorical columns, not {self.kind}")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        else:
            if self.min is not None or self.max is not None:
                raise ValueError(f"min/max are for numeric and integer columns, not {self.kind}")
            if self.kind == "categorical" and not self.categories:
                raise ValueError("a categorical column lists its allowed categories")
            if self.kind == "boolean" and self.categories is not None:
                raise ValueError("a boolean column takes true/false (or 1/0): no categories")
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError("categories repeat a value")
        return self

    def rules(self, name: str) -> Feature:
        """What the rule table (``project/rules.py``) allows this column, named ``name``."""
        return Feature.from_dict({"name": name, **self.model_dump()})

    @property
    def value_range(self) -> tuple[float, float] | None:
        if self.min is None and self.max is None:
            return None
        return (
            -float("inf") if self.min is None else self.min,
            float("inf") if self.max is None else self.max,
        )


class TargetSpec(ColumnSpec):
    name: str


class EvaluationSpec(_Strict):
    primary_metric: str
    direction: Direction | None = Field(
        default=None, description="Optional; when given it must be the metric's own direction."
    )
    min_improvement: float = Field(default=0.0, ge=0, lt=1, description="Relative; strict.")
    holdout_percent: int = Field(default=20, gt=0, lt=100)


class ArtifactSpec(_Strict):
    trusted_types: tuple[str, ...] = Field(
        default=(), description="Types the skops artifact may hold beyond skops' own trusted defaults."
    )


# A requirement as a project may write it: a distribution from the configured index, with extras,
# version specifiers and markers; never a URL, a path or a pip option.
REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]+\])?\s*([<>=!~;(].*)?")


DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


class EnvironmentSpec(_Strict):
    requirements: tuple[str, ...] = Field(
        default=(),
        description="Packages the project needs beyond the platform's, locked by `mlops-assets lock`.",
    )

    system_packages: tuple[str, ...] = Field(
        default=(),
        description="Debian packages the scoring image installs for the project's packages (e.g. libgomp1, "
        "LightGBM's OpenMP runtime); the machine's own where the model runs as a process.",
    )

    @field_validator("system_packages")
    @classmethod
    def _debian_names(cls, packages: tuple[str, ...]) -> tuple[str, ...]:
        for package in packages:
            if not DEBIAN_PACKAGE.fullmatch(package):
                raise ValueError(
                    f"{package!r}: a Debian package's name (lower-case letters, digits, + - .), e.g. libgomp1; "
                    "no version, option or shell"
                )
        return packages

    @field_validator("requirements")
    @classmethod
    def _from_the_index(cls, requirements: tuple[str, ...]) -> tuple[str, ...]:
        for requirement in requirements:
            if " @ " in requirement or not REQUIREMENT.fullmatch(requirement.strip()):
                raise ValueError(
                    f"{requirement!r}: a requirement is a package of the configured index with optional "
                    'extras, versions and markers (e.g. "lightgbm>=4.7,<5"); no URL, path or option'
                )
        return tuple(requirement.strip() for requirement in requirements)


class ServingSize(_Strict):
    """How big each scoring service of the project is, where a runtime can say (unset: the
    runtime's own default, as before the setting existed)."""

    workers: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="Worker processes per service (uvicorn's --workers); unset: 1 locally, 2 on ACI, AKS and the image.",
    )
    cpus: float | None = Field(
        default=None,
        gt=0,
        le=16,
        description="CPUs per service: a local container's --cpus, ACI's cpu, AKS's CPU limit; unset: 1 locally "
        "and on ACI, the manifest's on AKS. A local process takes what the machine gives it.",
    )


class ProjectSpec(_Strict):
    name: str
    version: str = Field(default="1", description="The spec's own version, recorded with every model.")
    description: str = ""
    task: Task
    target: TargetSpec
    features: dict[str, ColumnSpec] = Field(min_length=1)
    evaluation: EvaluationSpec
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to build_model/train.")
    artifact: ArtifactSpec = ArtifactSpec()
    environment: EnvironmentSpec = EnvironmentSpec()
    serving: ServingSize = ServingSize()
    categorical_dtype: Literal["object", "category"] = Field(
        default="object",
        description=(
            "How the model gets categorical features: text (object), or pandas Categorical over the "
            "spec's categories, for libraries that take categories natively (LightGBM)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _dagster_name(cls, name: str) -> str:
        if not PROJECT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid name: letters, digits and underscores only")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> ProjectSpec:
        if self.target.name in self.features:
            raise ValueError(f"target {self.target.name!r} is also listed as a feature")
        if self.target.nullable:
            raise ValueError("the target cannot be nullable: an unlabelled row teaches nothing")
        if self.task == "regression" and self.target.kind not in NUMBER_KINDS:
            raise ValueError(f"a regression target is numeric or integer, not {self.target.kind}")
        if self.task != "regression" and self.target.kind == "numeric":
            raise ValueError(f"a {self.task} target is categorical, boolean or integer, not numeric")
        if self.task == "binary" and self.target.kind == "categorical" and len(self.target.categories) != 2:
            raise ValueError(f"a binary target has 2 categories, not {len(self.target.categories)}")
        metrics = task_metrics(self.task)
        metric = metrics.get(self.evaluation.primary_metric)
        if metric is None:
            raise ValueError(
                f"evaluation.primary_metric {self.evaluation.primary_metric!r} does not fit a {self.task} "
                f"task; one of: {', '.join(metrics)}"
            )
        if self.evaluation.direction not in (None, metric.direction):
            raise ValueError(
                f"evaluation.direction: {metric.name} is to {metric.direction}, not {self.evaluation.direction}"
            )
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.features)

    @property
    def native_categories(self) -> dict[str, list[str]]:
        """Each categorical feature's categories where the model takes pandas Categorical columns
        (``categorical_dtype = "category"``); empty where it takes text."""
        if self.categorical_dtype == "object":
            return {}
        return {name: list(f.categories) for name, f in self.features.items() if f.kind == "categorical"}

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        """Every column a data file holds, features first, the target last."""
        return {**self.features, self.target.name: self.target}

    def serving_dict(self) -> dict[str, Any]:
        """What the scoring service needs of the spec, as plain JSON (model/rows.py reads it
        with the standard library: the service and Azure ML's server need no pydantic for it)."""

        def column(name: str, spec: ColumnSpec) -> dict[str, Any]:
            return {
                "name": name,
                "kind": spec.kind,
                "min": spec.min,
                "max": spec.max,
                "categories": list(spec.categories) if spec.categories else None,
                "nullable": spec.nullable,
                "out_of_range": spec.out_of_range,
            }

        return {
            "name": self.name,
            "spec_version": self.version,
            "task": self.task,
            "features": [column(name, spec) for name, spec in self.features.items()],
            "target": column(self.target.name, self.target),
            "trusted_types": list(self.artifact.trusted_types),
            # only where set: a project that leaves it ships the spec it shipped before
            **({"categorical_dtype": self.categorical_dtype} if self.native_categories else {}),
            **(
                {"system_packages": list(self.environment.system_packages)}
                if self.environment.system_packages
                else {}
            ),
            **({"serving": sized} if (sized := self.serving.model_dump(exclude_none=True)) else {}),
        }


def _key(location: tuple) -> str:
    return ".".join(str(part) for part in location) or "project"


def read_spec(folder: Path) -> ProjectSpec:
    """``folder/project.toml`` validated, or a ProjectError naming the file and every bad key."""
    path = folder / SPEC_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(f"{path}: no {SPEC_FILE}: a model project is a folder with one") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path}: not valid TOML ({exc})") from None
    try:
        return ProjectSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{path}: {_key(error['loc'])}: {_said(error)}" for error in exc.errors()]
        raise ProjectError("; ".join(problems)) from None


def _said(error: dict) -> str:
    """pydantic's message, with the value the file gave where the message does not say it
    (``kind = "yes/no"``: "Input should be 'numeric', ... or 'boolean', not 'yes/no'")."""
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    if error["type"] in ("value_error", "missing", "extra_forbidden") or not isinstance(
        given, str | int | float
    ):
        return message
    return f"{message}, not {given!r}"


__all__ = ["SPEC_FILE", "TASKS", "ColumnSpec", "ProjectError", "ProjectSpec", "TargetSpec", "read_spec"]
