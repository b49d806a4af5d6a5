"""A new user's own model on the first try: README's "Bring your own model, from zero" followed
command by command on a fresh clone, with a tree model a team would bring, to production."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_assets_tests.conftest import REPO
from mlops_assets_tests.projects import make_tree_project
from mlops_assets_tests.serving_support import free_port

pytestmark = pytest.mark.slow

SECTION = "### Bring your own model, from zero"


def readme_commands() -> list[str]:
    """The section's bash block, a command a line, comments dropped."""
    section = (REPO / "README.md").read_text().split(SECTION, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def fresh_clone(destination: Path) -> Path:
    """What `git clone` of this tree gives: its tracked and unignored files, nothing it built. uv
    itself (.tools) is shared, so the clone's `make install` fills .venv from uv's cache, offline."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / ".tools").symlink_to(REPO / ".tools")
    return destination


@pytest.fixture
def clone(tmp_path):
    folder = fresh_clone(tmp_path / "mlops-assets")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_", "VIRTUAL_ENV"))}
    env |= {
        "UV_OFFLINE": "1",  # the clone installs from uv's cache: nothing leaves this machine
        "MLOPS_PRODUCTION_PORT": str(free_port()),
        "MLOPS_QA_PORT": str(free_port()),
        "MLOPS_IMAGE_ENGINES": "",  # the process runtime: images are tested on their own
    }
    yield folder, env
    subprocess.run(
        [".venv/bin/mlops-assets", "down"],
        cwd=folder,
        env=env | {"MLOPS_MODEL_PROJECT": "models/my_model"},
        capture_output=True,
        timeout=120,
    )


def test_readme_s_from_zero_takes_a_tree_model_to_production_on_the_first_demo(clone):
    folder, env = clone
    commands = readme_commands()
    assert commands[0] == "make install" and commands[-1].endswith("make demo"), commands

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )

    install, init, own_test, build, demo = commands
    for command in (install, init):
        done = run(command)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])

    # Made the team's own, as the section says: model.py, a helper module, seed.py reading a file.
    project = folder / "models" / "my_model"
    make_tree_project(project)
    first = run(own_test)
    assert first.returncode == 1, first.stdout[-3000:]
    line = re.search(r"trust them under \[artifact\] in \S+: (trusted_types = \[.*?\])", first.stdout)
    assert line is not None, first.stdout[-3000:]
    spec = project / "project.toml"
    spec.write_text(re.sub(r"^trusted_types = .*$", line[1], spec.read_text(), flags=re.M))

    for command in (own_test, build):
        done = run(command)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    shown = run(demo)
    assert shown.returncode == 0, (shown.stdout[-4000:], shown.stderr[-4000:])
    assert "→ registered my_model version 1" in shown.stdout
    assert re.search(r"→ version \d serves at http://127\.0\.0\.1:\d+", shown.stdout), shown.stdout[-3000:]
    assert "Production URL: http://127.0.0.1:" in shown.stdout
    assert "Traceback" not in shown.stderr, shown.stderr[-3000:]


def test_every_setting_the_makefile_takes_is_documented_in_readme():
    """`make dev`'s port, the test workers: what a user may set on a make command is in README's
    settings or quick start, by name."""
    makefile = (REPO / "Makefile").read_text()
    settable = re.findall(r"^([A-Z_]+) \?=", makefile, flags=re.M)
    assert {"DAGSTER_PORT", "PYTEST_WORKERS"} <= set(settable)
    readme = (REPO / "README.md").read_text()
    assert [name for name in settable if f"`{name}" not in readme and f"{name}=" not in readme] == []
    assert "| `DAGSTER_PORT` | `3000` |" in readme
