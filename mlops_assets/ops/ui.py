"""`mlops-assets ui`: the Dagster UI behind a lock, with the daemon beside it (what `make dev` runs).

Dagster's webserver takes mutations from anyone who reaches its port, over GET too, with any
``Origin`` and any ``Host``: a page the operator opens in a browser could release or roll back
production (an ``<img>`` tag was enough), and DNS rebinding reached it by another name. So the
project serves the UI itself, as Dagster's own ``DagsterWebserver`` with one more middleware
(``ControlPlaneGuard``):

- the ``Host`` header must be one this UI answers to (127.0.0.1 and localhost on its port, and
  ``MLOPS_UI_ALLOWED_HOSTS``): a rebound name is refused (421);
- a request that carries an ``Origin`` must come from the UI itself (403): another site's page
  cannot post to it, nor open its websocket;
- every request but the login page needs the UI token, as ``Authorization: Bearer`` or as the
  cookie the login page sets (HttpOnly, SameSite=Strict): the token lives in
  ``MLOPS_HOME/secrets/ui-token`` (made 0600 at the first start, printed then, never logged);
- a GraphQL mutation only by POST: a GET that carries one is refused (405).
"""

from __future__ import annotations

import hmac
import html
import json
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs

from mlops_assets.settings import Settings, make_secret_file

COOKIE = "mlops_ui"
LOGIN_PATH = "/mlops/login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_PAGE = """<!doctype html><html><head><title>mlops-assets: log in</title></head><body>
<h1>mlops-assets</h1><p>{message}</p>
<form method="post" action="{action}"><label>UI token <input name="token" type="password" autofocus></label>
<button type="submit">Log in</button></form>
<p>The token is in <code>MLOPS_HOME/secrets/ui-token</code>.</p></body></html>"""


def ui_token(settings: Settings) -> tuple[str, bool]:
    """The UI token, and whether it was made just now (then it is shown once)."""
    path = settings.home_dir / "secrets" / "ui-token"
    made = not path.exists() and make_secret_file(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip(), made


def mutation_in(query: str) -> bool:
    """Whether a GraphQL document holds a mutation (or cannot be read: then it is not let through)."""
    from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

    try:
        document = parse(query)
    except GraphQLError:
        return True
    return any(
        isinstance(d, OperationDefinitionNode) and d.operation != OperationType.QUERY
        for d in document.definitions
    )


class ControlPlaneGuard:
    """ASGI middleware in front of the Dagster webserver; see the module's docstring."""

    def __init__(self, app, token: str, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        if host not in self.allowed_hosts:
            await _refuse(scope, send, 421, f"this UI does not answer to host {host!r}")
            return
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in (f"http://{host}", f"https://{host}"):
            await _refuse(scope, send, 403, f"a request from another origin ({origin}) is refused")
            return
        if scope["type"] == "http" and scope["path"] == LOGIN_PATH:
            await self._login(scope, receive, send)
            return
        if not self._authenticated(headers):
            if (
                scope["type"] == "http"
                and scope["method"] == "GET"
                and "text/html" in headers.get("accept", "")
            ):
                await _send(send, 303, b"", [(b"location", LOGIN_PATH.encode())])
            else:
                await _refuse(
                    scope, send, 401, f"log in first ({LOGIN_PATH}), or send the UI token as a bearer token"
                )
            return
        cross_site = headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and origin is None and cross_site:
            await _refuse(scope, send, 403, "a cross-site request is refused")
            return
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].endswith("/graphql"):
            queries = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("query", [])
            if any(mutation_in(q) for q in queries):
                await _refuse(scope, send, 405, "GraphQL mutations are taken by POST only")
                return
        await self.app(scope, receive, send)

    def _authenticated(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "").removeprefix("Bearer ").strip().encode()
        if given and hmac.compare_digest(given, self.token):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.token):
                return True
        return False

    async def _login(self, scope, receive, send) -> None:
        page = LOGIN_PAGE.replace("{action}", LOGIN_PATH)
        if scope["method"] != "POST":
            await _send(send, 200, page.replace("{message}", "").encode(), [(b"content-type", b"text/html")])
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > 4096:
                break
        token = (parse_qs(body.decode("latin-1")).get("token") or [""])[0].encode()
        if not hmac.compare_digest(token, self.token):
            refused = page.replace("{message}", html.escape("That is not the UI token.")).encode()
            await _send(send, 401, refused, [(b"content-type", b"text/html")])
            return
        cookie = f"{COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/".encode()
        await _send(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie)])


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": message}).encode()
    await _send(send, status, body, [(b"content-type", b"application/json")])


def allowed_hosts(port: int, extra: str = "") -> frozenset[str]:
    named = {f"127.0.0.1:{port}", f"localhost:{port}"}
    named |= {h.strip().lower() for h in extra.split(",") if h.strip()}
    return frozenset(named)


def serve(workspace: Path, host: str, port: int, token: str, hosts: frozenset[str]) -> None:
    """The webserver with the guard, until SIGINT/SIGTERM (uvicorn's own handling)."""
    import uvicorn
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.version import __version__
    from dagster_webserver.webserver import DagsterWebserver
    from starlette.middleware import Middleware

    class GuardedWebserver(DagsterWebserver):
        def build_middleware(self) -> list[Middleware]:
            return [
                Middleware(ControlPlaneGuard, token=token, allowed_hosts=hosts),
                *super().build_middleware(),
            ]

    with (
        get_possibly_temporary_instance_for_cli(cli_command="mlops-assets ui") as instance,
        WorkspaceProcessContext(
            instance, version=__version__, workspace_load_target=WorkspaceFileTarget(paths=[str(workspace)])
        ) as context,
    ):
        app = GuardedWebserver(context).create_asgi_app()
        uvicorn.run(app, host=host, port=port, log_level="warning")


def project_workspace(settings) -> Path:
    """A workspace file in the instance's folder whose one code location, the platform's, is named
    after the model project, so the UI says which project it shows."""
    import re

    from mlops_assets.project.locate import project_name

    location = re.sub(r"[^A-Za-z0-9_]", "_", project_name(settings.project_dir))
    path = settings.dagster_home / "workspace.yaml"
    path.write_text(
        "load_from:\n  - python_module:\n      module_name: mlops_assets.definitions\n"
        f"      working_directory: {json.dumps(str(Path(__file__).resolve().parents[2]))}\n"
        f"      location_name: {location}\n"
    )
    return path


def start_daemon(workspace: Path) -> subprocess.Popen:
    daemon = Path(sys.executable).parent / "dagster-daemon"
    return subprocess.Popen([str(daemon), "run", "-w", str(workspace)], stdin=subprocess.DEVNULL)
