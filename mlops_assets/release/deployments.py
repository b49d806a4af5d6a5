"""What a deployment target takes and gives back, without Dagster (the CLI reads these too).

A deployment that fails raises ``hosting.health.DeploymentError``."""

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Release:
    version: str
    image: str  # what a target pulls (pinned by digest when the builder reported one)
    context: Path | None  # the build context (model/ = artifact + manifest); None for a registry image
    code_digest: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    version: str
    image: str
    code_digest: str = ""
    context: str = ""  # the build context it serves, where the target needs it to restore
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
