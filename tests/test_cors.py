"""Browser front-ends on other origins (CORS_ORIGINS): the API answers the origins named,
and only on its own routes; a real browser on an allowed origin gets answers, on another
it is blocked."""
import functools
import http.server
import shutil
import threading

import pytest

from bench.harness import LiveServer
from sentiment_clf.config import cors_origins

from conftest import make_app, need

ALLOWED = "http://127.0.0.1:8123"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-api-key"}


def cors_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture()
def cors_client(sqlite_url, tiny_models):
    return make_app(sqlite_url, MODEL_DIR=tiny_models, CORS_ORIGINS=f"{ALLOWED}, https://app.example.com").test_client()


@pytest.mark.parametrize("path", ["/", "/ratings/batch", "/feedback", "/health", "/models", "/openapi.json"])
def test_an_allowed_origin_gets_its_preflight_and_its_answers(cors_client, path):
    preflight = cors_client.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})
    headers = cors_headers(preflight)
    assert preflight.status_code == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "OPTIONS", "POST"}
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-api-key"
    assert "Access-Control-Allow-Credentials" not in headers  # never: a key goes in a header the preflight allows
    answer = cors_client.get(path, headers={"Origin": ALLOWED})
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8124", "https://127.0.0.1:8123", "null"])
def test_another_origin_gets_no_cors_header(cors_client, origin):
    for response in (cors_client.options("/", headers={"Origin": origin, **PREFLIGHT}),
                     cors_client.post("/", json={"query": "fine"}, headers={"Origin": origin})):
        assert cors_headers(response) == {}


@pytest.mark.parametrize("path", ["/ui", "/docs", "/metrics"])
def test_the_page_the_docs_and_the_metrics_stay_same_origin(cors_client, path):
    assert cors_headers(cors_client.get(path, headers={"Origin": ALLOWED})) == {}


def test_by_default_no_origin_is_answered(client):
    assert cors_headers(client.options("/", headers={"Origin": ALLOWED, **PREFLIGHT})) == {}
    assert cors_headers(client.get("/?query=fine", headers={"Origin": ALLOWED})) == {}


def test_any_origin_with_a_star_and_still_no_credentials(sqlite_url, tiny_models):
    client = make_app(sqlite_url, MODEL_DIR=tiny_models, CORS_ORIGINS="*").test_client()
    headers = cors_headers(client.options("/", headers={"Origin": "http://anywhere.example", **PREFLIGHT}))
    assert headers["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in headers


@pytest.mark.parametrize("setting", ["https://app.example.com/", "app.example.com", "*, https://a.example",
                                     "ftp://a.example", "https://a.example/path"])
def test_a_setting_that_is_not_an_origin_is_refused_by_name(setting):
    with pytest.raises(ValueError, match="is not an origin|alone"):
        cors_origins(setting)


# -- a real browser ---------------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title></title>
<script>
const api = new URLSearchParams(location.search).get("api");
fetch(api + "/", {method: "POST", headers: {"Content-Type": "application/json"},
                  body: JSON.stringify({query: "that movie was boring"})})
  .then(r => r.json())
  .then(a => fetch(api + "/feedback", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify({model: "sentiment", query: "that movie was boring",
                                                             label: a.prediction})})
               .then(r => { document.title = "answered " + a.prediction + " " + r.status; }))
  .catch(() => { document.title = "blocked"; });
</script>"""


class Site:
    """A static page served from an origin of its own (another port on this host)."""

    def __init__(self, folder):
        folder.mkdir()
        (folder / "index.html").write_text(PAGE, encoding="utf-8")

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(Quiet, directory=str(folder)))
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_page_on_an_allowed_origin_gets_answers_and_one_on_another_is_blocked(tmp_path, sqlite_url):
    chromium = shutil.which("chromium")
    need(chromium, "Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM_ARGS

    allowed, other = Site(tmp_path / "allowed"), Site(tmp_path / "other")
    server = LiveServer(tmp_path / "server.log", workers=1,
                        env={"SENTIMENT_CLF_CORS_ORIGINS": allowed.origin, "SENTIMENT_CLF_DATABASE_URL": sqlite_url})
    try:
        server.wait_ready()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            titles = {}
            for site in (allowed, other):
                page = browser.new_page()
                page.goto(f"{site.origin}/index.html?api={server.url}")
                page.wait_for_function("document.title !== ''", timeout=20_000)
                titles[site] = page.title()
                page.close()
            browser.close()
        assert titles == {allowed: "answered Negative 201", other: "blocked"}
    finally:
        server.stop()
        allowed.close()
        other.close()
