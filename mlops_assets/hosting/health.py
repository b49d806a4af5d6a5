"""What a deployed service answers, asked over HTTP, and the error a deployment that fails raises.

Recorded state is never taken for health: ``unreadiness`` asks the service itself.
"""

import httpx


class DeploymentError(RuntimeError):
    """A deployment that did not come up; the message says why, the process is already gone."""


def unreadiness(url: str, version: str, timeout: float = 3.0) -> str | None:
    """None when the service at ``url`` answers ready with ``version``; else what is wrong, in
    words."""
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
