"""A home's hold on the scoring images it built or reused, and letting go of those it no longer needs.

An image is named by its build context (``mlops-assets/scoring:sha256-…``), so two homes on one
machine (parallel test runs, two projects) that assemble the same context share one image. A label
cannot say who uses it: it is fixed when the image is built, and the second home reuses the first
one's. So each home holds an image by a tag of its own, ``mlops-home-<id>:<context tag>``, and the
engine counts the tags: removing one of several only untags. A home lets go of an image by removing
its own tag; the image itself goes only when no other home's tag is left, and then by name without
``--force``, so the engine still refuses an image any container (of any home) runs from.
No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.hosting.engines import PROBE_TIMEOUT, Engine

HOME_REPOSITORY_PREFIX = "mlops-home-"
# Podman 4.3 fails a whole `images` listing when an image is removed while it lists ("image not
# known"): seen here when two homes let go at once. The listing is asked again.
LIST_ATTEMPTS = 5


def home_repository(home: Path) -> str:
    """The repository under which ``home`` tags the images it holds."""
    return HOME_REPOSITORY_PREFIX + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]


def _repository(name: str) -> str:
    """``name``'s repository without podman's ``localhost/`` (docker keeps a bare name bare)."""
    repository = name.rsplit(":", 1)[0]
    return repository.removeprefix("localhost/")


def _tags_of(engine: Engine, image: str) -> list[str] | None:
    found = engine.run("image", "inspect", "--format", "{{json .RepoTags}}", image, timeout=PROBE_TIMEOUT)
    if found.returncode != 0:
        return None
    return json.loads(found.stdout.strip() or "[]") or []


def hold(engine: Engine, image: str, tag: str, home: Path) -> bool:
    """Tag ``image`` for ``home``; False when the engine no longer has it (let go of meanwhile)."""
    reference = f"{home_repository(home)}:{tag}"
    return engine.run("tag", image, reference, timeout=PROBE_TIMEOUT).returncode == 0


def held(engine: Engine, home: Path) -> dict[str, str]:
    """The images ``home`` holds: its tag (the context's) → the image ID."""
    for attempt in range(LIST_ATTEMPTS):
        listed = engine.run(
            "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}", timeout=PROBE_TIMEOUT
        )
        if listed.returncode == 0 or "image not known" not in listed.stderr:
            break
        time.sleep(0.5 * (attempt + 1))
    if listed.returncode != 0:
        raise RuntimeError(f"{engine.name} images failed: {listed.stderr.strip()[-500:]}")
    mine = home_repository(home)
    holds = {}
    for line in listed.stdout.splitlines():
        name, _, image_id = line.partition("\t")
        if _repository(name) == mine:
            holds[name.rsplit(":", 1)[1]] = image_id.strip().removeprefix("sha256:")
    return holds


@dataclass
class LetGo:
    removed: list[str] = field(default_factory=list)  # context tags whose image went
    shared: list[str] = field(default_factory=list)  # let go of, but another home holds it
    refused: list[str] = field(default_factory=list)  # let go of, but the engine kept it (a container)
    error: str = ""  # the engine failed: nothing more let go of this time

    def summary(self) -> str:
        if self.error:
            return f"stopped ({self.error}); the next release tries again"
        if not (self.removed or self.shared or self.refused):
            return "no image to remove"
        parts = [f"removed {len(self.removed)} image(s)"]
        if self.shared:
            parts.append(f"{len(self.shared)} still held by another home")
        if self.refused:
            parts.append(f"{len(self.refused)} kept by the engine (a container uses it)")
        return ", ".join(parts)


def _same_image(image_id: str, reference: str) -> bool:
    reference = reference.removeprefix("sha256:")
    return len(reference) >= 12 and image_id.startswith(reference)


def let_go(engine: Engine, home: Path, keep: set[str], in_use: set[str] = frozenset()) -> LetGo:
    """Drop ``home``'s hold on every image it holds but those tagged in ``keep`` and those whose
    ID ``in_use`` names (what its deployments run); remove each image no other home holds."""
    outcome = LetGo()
    mine = home_repository(home)
    for tag, image_id in sorted(held(engine, home).items()):
        if tag in keep or any(_same_image(image_id, reference) for reference in in_use):
            continue
        # Never by ID: with another home's tag on it, rmi of an ID needs --force.
        engine.run("rmi", f"{mine}:{tag}", timeout=PROBE_TIMEOUT)
        left = _tags_of(engine, image_id)
        if left is None:  # our tag was its last name: the engine removed it
            outcome.removed.append(tag)
            continue
        others = {_repository(name) for name in left} - {mine}
        if any(repository.startswith(HOME_REPOSITORY_PREFIX) for repository in others):
            outcome.shared.append(tag)
            continue
        for name in left:
            engine.run("rmi", name, timeout=PROBE_TIMEOUT)
        if _tags_of(engine, image_id) is None:
            outcome.removed.append(tag)
        else:  # a container runs from it: held again, so a later release lets go of it
            engine.run("tag", image_id, f"{mine}:{tag}", timeout=PROBE_TIMEOUT)
            outcome.refused.append(tag)
    return outcome
