"""The OpenAPI document: valid, true to the app's routes, and fuzzed against the real server."""
import re
import subprocess

import pytest
import requests
from openapi_spec_validator import validate

from conftest import ROOT, venv_tool, need
from live_server import LiveServer


def flask_paths(app):
    """The app's routes in OpenAPI form, with their methods."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "docs_asset"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_the_document_is_valid_openapi_3(client):
    document = client.get("/openapi.json").json
    validate(document)
    assert document["openapi"].startswith("3.")


def test_the_document_describes_every_route_and_method(client, app):
    documented = {path: set(item) for path, item in client.get("/openapi.json").json["paths"].items()}
    assert documented == flask_paths(app)


def test_the_docs_page_serves_swagger_ui_from_here(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    assert client.get("/static/docs.js").status_code == 200


@pytest.mark.slow
def test_fuzzing_from_the_document_finds_no_server_error_and_no_schema_mismatch(tmp_path, sqlite_url):
    schemathesis = venv_tool("schemathesis")
    need(schemathesis, "schemathesis is not installed (requirements-test.txt)")
    server = LiveServer(tmp_path / "server.log", workers=2, env={
        "DATABASE_URL": sqlite_url, "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "100000 per minute"})
    try:
        server.wait_ready()
        result = subprocess.run(
            [schemathesis, "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
             f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "25",
             "--seed", "20261122", "--request-timeout", "20", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)  # its cache lands there
    finally:
        server.stop()
    report = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated", report)
    print(f"schemathesis: {cases.group(0) if cases else 'no count'}")
    assert result.returncode == 0, report[-6000:]
    assert "5xx" not in server.log()
