"""The Dagster UI as `make dev` serves it (`mlops-assets ui`): nobody steers it without the token,
from another origin, under another host name, or by GET. A real webserver on 127.0.0.1."""

import json
import os
import signal
import subprocess
import time
import urllib.parse

import httpx
import pytest

from mlops_assets_tests.conftest import REPO, subprocess_env
from mlops_assets_tests.serving_support import BIN, free_port

pytestmark = pytest.mark.slow
# A mutation that changes what the instance holds: a partition of model_versions.
ADD_PARTITION = (
    'mutation { addDynamicPartition(repositorySelector: {repositoryLocationName: "diabetes", '
    'repositoryName: "__repository__"}, partitionsDefName: "model_versions", partitionKey: "%s") '
    "{ __typename } }"
)
QUERY = "{ version }"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui") / "mlops"
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlops-assets"), "ui", "--no-daemon", "--port", str(port)],
        cwd=REPO,
        env=subprocess_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/mlops/login", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "mlops-assets ui never answered"
        time.sleep(0.5)
    token = (home / "secrets" / "ui-token").read_text().strip()
    yield url, token, home
    os.killpg(server.pid, signal.SIGTERM)
    output, _ = server.communicate(timeout=60)
    assert output.count(token) == 1, "the token is shown once, at its making, and never logged"


def _graphql(url: str, query: str, token: str | None, method: str = "POST", **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if method == "GET":
        return httpx.get(f"{url}/graphql?" + urllib.parse.urlencode({"query": query}), headers=headers)
    return httpx.post(f"{url}/graphql", json={"query": query}, headers=headers, timeout=60)


def _partitions(url: str, token: str) -> list[str]:
    """The model_versions partitions the instance holds, read by POST with the token."""
    found = _graphql(url, '{ assetNodes(assetKeys: [{path: ["scoring_image"]}]) { partitionKeys } }', token)
    assert found.status_code == 200, found.text
    return found.json()["data"]["assetNodes"][0]["partitionKeys"]


def test_graphql_by_get_from_another_origin_or_host_or_without_the_token_changes_nothing(ui):
    url, token, _ = ui
    assert _partitions(url, token) == []
    tries = {
        "GET with the token": _graphql(url, ADD_PARTITION % "get", token, method="GET"),
        "a foreign Origin": _graphql(url, ADD_PARTITION % "origin", token, Origin="http://evil.example"),
        "a foreign Host (DNS rebinding)": _graphql(
            url, ADD_PARTITION % "host", token, Host="evil.example:3000"
        ),
        "no token": _graphql(url, ADD_PARTITION % "anonymous", None),
        "a wrong token": _graphql(url, ADD_PARTITION % "wrong", "not-the-token"),
        "a cross-site fetch": _graphql(
            url, ADD_PARTITION % "site", token, **{"Sec-Fetch-Site": "cross-site"}
        ),
    }
    expected = {
        "GET with the token": 405,
        "a foreign Origin": 403,
        "a foreign Host (DNS rebinding)": 421,
        "no token": 401,
        "a wrong token": 401,
        "a cross-site fetch": 403,
    }
    assert {name: answer.status_code for name, answer in tries.items()} == expected, {
        name: answer.text[:200] for name, answer in tries.items()
    }
    assert _partitions(url, token) == []  # none of them changed anything
    # The same mutation, by POST with the token from the UI's own origin, does.
    done = _graphql(url, ADD_PARTITION % "7", token, Origin=url)
    assert done.status_code == 200 and "errors" not in done.json(), done.text
    assert _partitions(url, token) == ["7"]
    # A read by GET still works, as the UI's own pages do.
    assert _graphql(url, QUERY, token, method="GET").status_code == 200


def test_the_login_page_sets_a_strict_cookie_for_the_right_token_only(ui):
    url, token, home = ui
    page = httpx.get(url, headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/mlops/login"
    wrong = httpx.post(f"{url}/mlops/login", data={"token": "guess"}, headers={"Origin": url})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    right = httpx.post(f"{url}/mlops/login", data={"token": token}, headers={"Origin": url})
    cookie = right.headers["set-cookie"]
    assert right.status_code == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with httpx.Client(cookies={"mlops_ui": token}) as browser:
        assert (
            browser.post(f"{url}/graphql", json={"query": QUERY}, headers={"Origin": url}).status_code == 200
        )
    assert (home / "secrets" / "ui-token").stat().st_mode & 0o777 == 0o600
    assert json.loads(httpx.get(f"{url}/graphql", params={"query": QUERY}).text)["error"].startswith(
        "log in first"
    )
