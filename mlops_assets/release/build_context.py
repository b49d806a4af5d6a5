"""The scoring image's build context, assembled from a registered version and named by its content.

Layout: ``Dockerfile``, ``requirements.txt`` (the locked `serving` group),
``requirements-azure.txt`` (`serving` and `serving-azure`, or empty), ``project-requirements/``
(only for a version whose project locks packages: its lock and where they come from),
``project/`` (the package,
installed with --no-deps, with the version's ``serving-spec.json`` and its project package
(``project-package/``, mounted as ``model_project``) beside ``model/rows.py``: what requests
may hold, the types the artifact may hold and the classes it loads with are the code's, not the
manifest's), ``model/`` (artifact, its compiled graph if it has one, manifest). The digest covers every
file, so the same inputs give the same tag and nothing is rebuilt; ``code_digest`` leaves out
``model/``, so a release target can tell "only the model changed" (swap the model in place)
from "the code changed" (hand over to a new process).
"""

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_assets.hosting.build_layout import (
    AZURE_REQUIREMENTS,
    MODEL_DIR,
    PROJECT_DEBIAN_PACKAGES,
    PROJECT_DIR,
    PROJECT_INDEX,
    PROJECT_LOCK,
    PROJECT_REQUIREMENTS,
    PROJECT_WHEELS,
    REQUIREMENTS,
)
from mlops_assets.model.rows import SPEC_NAME
from mlops_assets.project.environment import normalized, pins_of
from mlops_assets.project.package import LOCK_FILE, PACKAGED_DIR, write_package

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "scoring.Dockerfile"
PROJECT_FILES = ("pyproject.toml", "README.md")


def image_tag(digest: str) -> str:
    """The tag of the image built from the context with this digest (or folder name: its first 16)."""
    return f"sha256-{digest[:16]}"


@dataclass(frozen=True)
class BuildContext:
    path: Path
    digest: str
    code_digest: str
    files: int
    repaired: bool = False  # the folder for these inputs had been edited: assembled again

    @property
    def tag(self) -> str:
        return image_tag(self.digest)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path), "tag": self.tag}


def serving_requirements(azure: bool = False, repo: Path = REPO) -> bytes:
    """The `serving` group exactly as locked, without the project (installed with --no-deps);
    with ``azure``, the `serving-azure` group too (Blob Storage request log, App Insights)."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    groups = ["--only-group", "serving", *(["--only-group", "serving-azure"] if azure else [])]
    result = subprocess.run(
        [uv, "export", "--frozen", *groups, "--no-hashes", "--no-emit-project", "--no-header"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return result.stdout


# Where the scoring Dockerfile installs the project (the layer a lock's packages go before).
_PROJECT_LAYER = "COPY project/ /app/project/"
_PROJECT_REQUIREMENTS_LAYER = f"""# The model project's own packages (the Debian packages its [environment] names, then its
# requirements.lock, each by hash), layers of their own between the platform's and the code: a
# new model of the same project rebuilds nothing above it.
COPY {PROJECT_REQUIREMENTS}/ /app/{PROJECT_REQUIREMENTS}/
# hadolint ignore=DL3008,SC2046
RUN if [ -s /app/{PROJECT_DEBIAN_PACKAGES} ]; then \\
        apt-get update -qq \\
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
           $(cat /app/{PROJECT_DEBIAN_PACKAGES}) \\
        && rm -rf /var/lib/apt/lists/*; \\
    fi
RUN if [ -f /app/{PROJECT_LOCK} ]; then \\
        if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE" SSL_CERT_FILE="$CA_BUNDLE"; fi \\
        && python3 -m venv /tmp/uv \\
        && /tmp/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "uv==${{UV_VERSION}}" \\
        && if [ -d /app/{PROJECT_WHEELS} ]; then set -- --no-index --find-links /app/{PROJECT_WHEELS}; \\
           else set -- --index-url "$(cat /app/{PROJECT_INDEX})"; fi \\
        && /tmp/uv/bin/uv pip install --quiet --no-cache --no-config --python /opt/venv/bin/python \\
           --require-hashes "$@" --requirement /app/{PROJECT_LOCK} \\
        && rm -rf /tmp/uv; \\
    fi \\
    && rm -rf /app/{PROJECT_REQUIREMENTS}

"""


def project_requirements(lock_text: str, index: str, serving: bytes = b"") -> dict[str, bytes]:
    """The context's files for a version whose project locks packages: the lock, and where its
    packages come from (the index URL; for a folder of wheels, the locked ones themselves, since
    an image build cannot reach this machine's folders, but for those the ``serving`` requirements
    install at the same version before them: a satisfied pin is not installed again)."""
    files = {PROJECT_LOCK: lock_text.encode()}
    folder = Path(index)
    if not folder.is_dir():
        files[PROJECT_INDEX] = index.encode()
        return files
    platform = pins_of(serving.decode())
    wanted = {name: v for name, v in pins_of(lock_text).items() if platform.get(name) != v}
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if wanted.get(normalized(name)) == version:
            files[f"{PROJECT_WHEELS}/{wheel.name}"] = wheel.read_bytes()
    return files


def dockerfile(with_project_requirements: bool) -> str:
    """The scoring Dockerfile, with the project's own layer where the version brings packages."""
    text = DOCKERFILE.read_text()
    if not with_project_requirements:
        return text
    return text.replace(_PROJECT_LAYER, _PROJECT_REQUIREMENTS_LAYER + _PROJECT_LAYER, 1)


def _tree_digest(root: Path, exclude: str | None = None) -> tuple[str, int]:
    digest, count = hashlib.sha256(), 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if exclude and relative.startswith(exclude + "/"):
            continue
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        count += 1
    return digest.hexdigest(), count


def _write_tree(
    root: Path,
    artifact_name: str,
    artifact: bytes,
    manifest: dict,
    requirements: bytes,
    azure: bytes,
    serving_spec: dict | None,
    package: dict[str, str] | None,
    extra: dict[str, bytes],
    model_files: dict[str, bytes],
) -> None:
    (root / MODEL_DIR).mkdir(parents=True)
    for name, data in {artifact_name: artifact, **model_files}.items():
        (root / MODEL_DIR / name).write_bytes(data)
    (root / MODEL_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (root / "Dockerfile").write_text(dockerfile(bool(extra)))
    for relative, data in extra.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / REQUIREMENTS).write_bytes(requirements)
    (root / AZURE_REQUIREMENTS).write_bytes(azure)
    project = root / PROJECT_DIR
    project.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(REPO / name, project / name)
    shutil.copytree(
        REPO / "mlops_assets",
        project / "mlops_assets",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", SPEC_NAME, PACKAGED_DIR),
    )
    if serving_spec is not None:
        spec = json.dumps(serving_spec, indent=2, sort_keys=True)
        (project / "mlops_assets" / "model" / SPEC_NAME).write_text(spec)
    if package is not None:
        write_package(package, project / "mlops_assets" / "model" / PACKAGED_DIR)


def intact(path: Path) -> bool:
    """Whether a stored context still holds what it was assembled with: its folder is named by
    the digest of its files, so any edit (manifest and model changed together included) shows."""
    return path.is_dir() and _tree_digest(path)[0].startswith(path.name)


def assemble(
    contexts_dir: Path,
    artifact_name: str,
    artifact: bytes,
    manifest: dict,
    requirements: bytes,
    azure_requirements: bytes = b"",
    serving_spec: dict | None = None,
    package: dict[str, str] | None = None,
    package_index: str = "",
    model_files: dict[str, bytes] | None = None,
) -> tuple[BuildContext, bool]:
    """The context for these inputs, and whether it was new (False: an identical one existed).
    ``azure_requirements``: the `serving` and `serving-azure` groups, for an image that serves the
    Azure profile (empty: none). ``serving_spec``: the model project's (ProjectSpec.serving_dict);
    None: the service takes every feature for a number. ``package``: the version's project package
    (its modules by path), for an artifact whose classes are the project's; one that carries a
    lock gets its packages installed from ``package_index`` (see ``project_requirements``).
    ``model_files``: more of the version's files beside the artifact (its compiled graph)."""
    contexts_dir.mkdir(parents=True, exist_ok=True)
    staging = contexts_dir / f".staging-{hashlib.sha256(artifact).hexdigest()[:12]}"
    shutil.rmtree(staging, ignore_errors=True)
    lock = (package or {}).get(LOCK_FILE)
    extra = project_requirements(lock, package_index, requirements) if lock else {}
    system = (serving_spec or {}).get("system_packages")
    if system:
        extra[PROJECT_DEBIAN_PACKAGES] = ("\n".join(system) + "\n").encode()
    _write_tree(
        staging,
        artifact_name,
        artifact,
        manifest,
        requirements,
        azure_requirements,
        serving_spec,
        package,
        extra,
        model_files or {},
    )
    digest, files = _tree_digest(staging)
    code_digest, _ = _tree_digest(staging, exclude=MODEL_DIR)
    final = contexts_dir / digest[:16]
    # A stored context is a cache of these inputs: reused only if its files still are them, never
    # trusting its own manifest (an edit that keeps manifest and model consistent is still caught).
    repaired = final.exists() and _tree_digest(final)[0] != digest
    if repaired:
        shutil.rmtree(final)
    new = not final.exists()
    if new:
        staging.rename(final)
    else:
        shutil.rmtree(staging)
    return BuildContext(final, digest, code_digest, files, repaired), new
