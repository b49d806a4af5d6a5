"""A private PostgreSQL cluster on 127.0.0.1 for the tests: initdb, pg_ctl, gone afterwards.

PostgreSQL refuses to run as root; when the tests run as root (CI), every server command runs
as the ``postgres`` user (``runuser``) on a data directory it owns.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlops_assets_tests.ports import free_port


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    password: str
    database: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "PGSSLMODE": "disable",
        }


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: `make test` installs PostgreSQL (apt-get install postgresql)")
    return str(found)


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start() -> tuple[Path, Postgres]:
    # Not under pytest's tmp dirs: their 0700 parents would keep the postgres user out.
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    root.chmod(0o755)
    password = secrets.token_hex(16)
    (root / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    run = {"check": True, "capture_output": True, "text": True}
    subprocess.run(
        _as_owner(
            [
                _bin("initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "dagster",
                f"--pwfile={root / 'pw'}",
                "--auth=scram-sha-256",
            ]
        ),
        **run,
    )
    subprocess.run(
        _as_owner(
            [
                _bin("pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "server.log"),
                "-o",
                f"-p {port} -h 127.0.0.1 -k {root}",
                "-w",
                "start",
            ]
        ),
        **run,
    )
    server = Postgres(port=port, user="dagster", password=password, database="dagster")
    subprocess.run(
        [_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
        env={**os.environ, "PGPASSWORD": password},
        **run,
    )
    return root, server


def stop(root: Path) -> None:
    subprocess.run(
        _as_owner([_bin("pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"]),
        check=False,
        capture_output=True,
    )
    shutil.rmtree(root, ignore_errors=True)
