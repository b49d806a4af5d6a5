"""What a deployment target takes and gives back, without Dagster (the CLI reads these too)."""

from dataclasses import asdict, dataclass, field
from pathlib import Path


class DeploymentError(RuntimeError):
    """A deployment that did not come up; the message says why, the process is already gone."""


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


def unreadiness(url: str, version: str, timeout: float = 3.0) -> str | None:
    """None when the service at ``url`` answers ready with ``version``; else what is wrong, in
    words. Recorded state is never taken for health: this asks."""
    import httpx

    try:
        answer = httpx.get(f"{url}/health/ready", timeout=timeout)
        said = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"not answering at {url} ({type(exc).__name__})"
    if answer.status_code != 200:
        return f"not ready at {url}: {said.get('reason') or said.get('status')}"
    if str(said.get("version")) != str(version):
        return f"answering with version {said.get('version')}, not {version}"
    return None
