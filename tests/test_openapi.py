"""The OpenAPI document: valid, true to the app's routes, and fuzzed against the real server."""
import re
import subprocess

import pytest
from openapi_spec_validator import validate

from bench.harness import LiveServer

from conftest import APP_DIR, ROOT, make_app, need, venv_tool


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


def test_the_document_takes_limits_from_the_settings_and_labels_from_the_models(sqlite_url):
    from sentiment_clf.tasks import MODELS

    document = make_app(sqlite_url, MAX_QUERY_CHARS=7, MAX_BATCH=3).test_client().get("/openapi.json").json
    validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["PredictionArgs"]["properties"]["query"]["maxLength"] == 7
    assert schemas["BatchBody"]["properties"]["queries"]["maxItems"] == 3
    assert schemas["BatchBody"]["properties"]["queries"]["items"]["maxLength"] == 7
    assert schemas["SentimentPrediction"]["properties"]["prediction"]["enum"] == list(MODELS["sentiment"].labels)
    assert schemas["QuestionsFineProbabilities"]["required"] == list(MODELS["questions-fine"].labels)
    feedback = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(feedback["discriminator"]["mapping"]) == set(MODELS)
    for name, spec in MODELS.items():
        member = schemas[feedback["discriminator"]["mapping"][name].rsplit("/", 1)[1]]
        assert member["properties"]["label"]["enum"] == list(spec.labels)


def test_openapi_py_writes_no_limit_model_name_or_label():
    from sentiment_clf.tasks import MODELS

    source = (APP_DIR / "sentiment_clf" / "web" / "openapi.py").read_text()
    words = set(MODELS) | {label for spec in MODELS.values() for label in spec.labels}
    words -= {"description", "title"}  # fine question types that are also OpenAPI's words
    assert not [w for w in words if f'"{w}"' in source or f"'{w}'" in source]
    assert not re.search(r"\b(10_?000|1_?000)\b", source)


def test_every_answer_fits_the_type_that_documents_it(client, app):
    """The types behind the document validate what the endpoints really answer (extra keys refused)."""
    from pydantic import TypeAdapter

    from sentiment_clf.tasks import endpoint_models
    from sentiment_clf.web import schemas

    types = app.extensions["schemas"]
    for spec in endpoint_models():
        answer = TypeAdapter(types.predictions[spec.name])
        for explain in ("0", "1"):
            answer.validate_python(client.get(spec.endpoint, query_string={"query": "a dull film",
                                                                            "explain": explain}).json, strict=True)
        results = client.post(spec.batch_endpoint, json={"queries": ["a dull film", "fine"], "explain": True}).json
        TypeAdapter(types.batch_results[spec.name]).validate_python(results, strict=True)
    feedback = client.post("/feedback", json={"model": "sentiment", "query": "a dull film", "label": "Negative"})
    TypeAdapter(schemas.FeedbackId).validate_python(feedback.json, strict=True)
    for path, documented in [("/health", schemas.Health), ("/ready", schemas.Ready), ("/models", schemas.ModelList),
                             ("/nope", schemas.Error)]:
        TypeAdapter(documented).validate_python(client.get(path).json, strict=True)


def test_the_docs_page_serves_swagger_ui_from_here(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # Files are sent from open handles: close each response (warnings are errors here).
    with client.get("/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200 and len(asset.data) > 100_000
    with client.get("/static/docs.js") as script:
        assert script.status_code == 200


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


def test_the_docs_group_every_operation_by_tag_and_every_example_is_answered(client):
    document = client.get("/openapi.json").json
    tags = [tag["name"] for tag in document["tags"]]
    assert tags == ["predict", "feedback", "models and health", "open inference protocol", "pages"]
    used = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, (method, path)
            used.add(operation["tags"][0])
            parameters = {p["name"]: p["example"] for p in operation.get("parameters", []) if "example" in p}
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                if path.startswith("/ui"):
                    continue  # the page's forms carry a CSRF token that only the page hands out
                assert "example" in content, (method, path, media)
                url = path.replace("{name}", str(parameters.get("name", "")))
                headers = {k: str(v) for k, v in parameters.items() if k[0].isupper()}
                sent = client.post(url, headers=headers, **({"json": content["example"]} if media.endswith("json")
                                                              else {"data": content["example"]}))
                assert sent.status_code in (200, 201), (method, path, media, sent.json)
    assert used == set(tags)
