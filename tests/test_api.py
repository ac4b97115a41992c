"""The HTTP API through Flask's test client: answers, argument locations and errors."""
import inspect
import json
import os

import pytest

from app import create_app
from model import ModelFileError
from sentiment_clf import errors

from conftest import MODELS_DIR, make_app

RATINGS = ["negative", "somewhat negative", "neutral", "somewhat positive", "positive"]


def assert_prediction(body, labels, variant="fast"):
    assert list(body) == ["prediction", "confidence", "probabilities", "variant", "version", "read"]
    assert body["variant"] == variant
    assert set(body["read"]) == {"tokens", "text_tokens", "windows", "truncated"}
    assert body["read"]["tokens"] <= body["read"]["text_tokens"]
    assert len(body["version"]) == 12
    assert list(body["probabilities"]) == labels
    assert body["prediction"] in labels
    assert body["confidence"] == body["probabilities"][body["prediction"]]
    assert body["confidence"] == max(body["probabilities"].values())
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_get_with_a_query_string(client):
    response = client.get("/", query_string={"query": "that movie was boring"})
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert_prediction(response.json, ["Negative", "Positive"])
    assert response.json["prediction"] == "Negative"
    assert response.json["confidence"] > 0.5


def test_positive_text(client):
    body = client.get("/", query_string={"query": "a gorgeous, witty and moving film"}).json
    assert body["prediction"] == "Positive"


@pytest.mark.parametrize("send", [
    lambda c: c.get("/", data={"query": "that movie was boring"}),  # curl -X GET -d
    lambda c: c.post("/", data={"query": "that movie was boring"}),
    lambda c: c.post("/", json={"query": "that movie was boring"}),
    lambda c: c.get("/", json={"query": "that movie was boring"}),  # HTTPie's query=...
], ids=["form-on-get", "form-on-post", "json-on-post", "json-on-get"])
def test_every_argument_location_gives_the_same_answer(client, send):
    expected = client.get("/", query_string={"query": "that movie was boring"}).json
    response = send(client)
    assert response.status_code == 200, response.json
    assert response.json == expected


@pytest.mark.parametrize("url, body, expected", [
    ("?query=fine&explain=0", {"query": "four words read here", "explain": True}, (1, False)),
    ("?explain=1", {"query": "four words read here", "explain": False}, (4, True)),
    ("", {"query": "four words read here", "explain": True}, (4, True)),
    ("?query=fine", {"explain": True}, (1, True)),
], ids=["url-over-json", "flag-in-url-query-in-json", "all-in-json", "query-in-url-flag-in-json"])
def test_each_field_of_a_prediction_is_read_by_one_rule_url_then_body(client, url, body, expected):
    # The URL, else the JSON body, else a form: field by field, the same for every field.
    answer = client.post(f"/{url}", json=body).json
    assert (answer["read"]["tokens"], "explanation" in answer) == expected


def test_ratings_lists_five_labels_from_negative_to_positive(served_client):
    client = served_client
    response = client.get("/ratings", query_string={"query": "a gorgeous, witty, seductive movie"})
    assert response.status_code == 200
    assert_prediction(response.json, RATINGS)
    assert response.json["prediction"] in ("somewhat positive", "positive")


@pytest.mark.parametrize("text", [
    "Ça me plaît beaucoup, très réussi", "😀😀😀", "映画はとても退屈だった", "\u200b", "a\x00b",
    "that   movie\twas\r\nboring", "    padded    ", "!!!???",
])
def test_any_text_is_predicted(client, text):
    response = client.post("/", json={"query": text})
    assert response.status_code == 200, response.json
    assert_prediction(response.json, ["Negative", "Positive"])


def test_whitespace_and_curly_quotes_do_not_change_the_answer(client):
    plain = client.get("/", query_string={"query": "it's not a good movie"}).json
    for variant in ["  it's \t not   a good\nmovie ", "It’s not a good movie", "IT'S NOT A GOOD MOVIE"]:
        assert client.get("/", query_string={"query": variant}).json == plain


def assert_error(response, status, fragment):
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    body = response.json
    assert list(body) == ["message"]
    assert fragment in body["message"]
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/ratings", "/hatespeech", "/questions"])
@pytest.mark.parametrize("send, status, fragment", [
    (lambda c, p: c.get(p), 400, "missing 'query'"),
    (lambda c, p: c.get(p, query_string={"q": "x"}), 400, "missing 'query'"),
    (lambda c, p: c.get(p, query_string={"query": ""}), 400, "'query' is empty"),
    (lambda c, p: c.get(p, query_string={"query": " \t\n "}), 400, "'query' is empty"),
    (lambda c, p: c.post(p, json={"query": ""}), 400, "'query' is empty"),
    (lambda c, p: c.post(p, json={"query": 42}), 400, "must be a string"),
    (lambda c, p: c.post(p, json={"query": None}), 400, "must be a string"),
    (lambda c, p: c.post(p, json={"query": ["a"]}), 400, "must be a string"),
    (lambda c, p: c.post(p, json={"text": "x"}), 400, "missing 'query' in the JSON body"),
    (lambda c, p: c.post(p, data='{"query": "\\ud800"}', content_type="application/json"), 400,
     "not valid Unicode"),
    (lambda c, p: c.post(p, json=["x"]), 400, "must be an object"),
    (lambda c, p: c.get(p, content_type="application/json"), 400, "missing 'query'"),
    (lambda c, p: c.post(p, data='{"query": ', content_type="application/json"), 400, "not valid JSON"),
    (lambda c, p: c.post(p, data=b"\xff\xfe", content_type="application/json"), 400, "not valid JSON"),
    (lambda c, p: c.get(p, query_string={"query": "a" * 10_001}), 413, "10001 characters, the limit is 10000"),
    (lambda c, p: c.post(p, json={"query": "é" * 10_001}), 413, "the limit is 10000"),
    (lambda c, p: c.delete(p), 405, "method is not allowed"),
    (lambda c, p: c.put(p, json={"query": "x"}), 405, "method is not allowed"),
], ids=["none", "other-arg", "empty", "blank", "json-empty", "json-number", "json-null",
        "json-list", "json-no-query", "json-surrogate", "json-empty-body", "json-not-object", "json-malformed",
        "json-not-utf8", "too-long", "json-too-long", "delete", "put"])
def test_bad_input_gets_a_clear_json_error(client, path, send, status, fragment):
    assert_error(send(client, path), status, fragment)


HATE = ["hate speech", "offensive language", "neither"]


def test_hatespeech_answers_every_class(served_client):
    client = served_client
    body = client.get("/hatespeech", query_string={"query": "RT @user: these hoes aint loyal &amp; never was"}).json
    assert_prediction(body, HATE)
    assert body["prediction"] == "offensive language"
    calm = client.post("/hatespeech", json={"query": "the weather in portland is lovely today"}).json
    assert calm["prediction"] == "neither"


def test_questions_answer_both_levels(served_client):
    client = served_client
    body = client.get("/questions", query_string={"query": "What is the capital of Peru ?"}).json
    assert_prediction({k: v for k, v in body.items() if k != "fine"},
                      ["abbreviation", "description", "entity", "human", "location", "numeric"])
    assert body["prediction"] == "location"
    assert len(body["fine"]["probabilities"]) == 47
    assert body["fine"]["prediction"] == "city"
    lima = client.get("/questions", query_string={"query": "How many people live in Lima ?"})
    assert lima.json["prediction"] == "numeric"


@pytest.mark.parametrize("path", ["/", "/ratings", "/hatespeech", "/questions"])
def test_explain_gives_the_terms_behind_the_answer(client, path):
    plain = client.get(path, query_string={"query": "that movie was boring and stupid"}).json
    body = client.get(path, query_string={"query": "that movie was boring and stupid", "explain": "1"}).json
    assert "explanation" not in plain
    why = body.pop("explanation")
    assert body.get("fine", {}).pop("explanation", None) is not None or path != "/questions"
    assert {k: v for k, v in body.items() if k != "fine"} == {k: v for k, v in plain.items() if k != "fine"}
    assert set(why) == {"versus", "margin", "bias", "toward", "away"}
    assert why["versus"] in plain["probabilities"] and why["versus"] != plain["prediction"]
    assert all(set(t) == {"term", "weight"} for t in why["toward"] + why["away"])


def test_explain_reads_every_location(client):
    assert "explanation" in client.post("/", json={"query": "boring", "explain": True}).json
    assert "explanation" in client.post("/", data={"query": "boring", "explain": "true"}).json
    assert "explanation" not in client.get("/", query_string={"query": "boring", "explain": "0"}).json
    assert "explanation" not in client.post("/", json={"query": "boring", "explain": None}).json
    for bad in ("maybe", "", "yes", "TRUE"):
        assert_error(client.get("/", query_string={"query": "boring", "explain": bad}), 400, "'explain' must be 1 or 0")
    assert_error(client.post("/", json={"query": "boring", "explain": "1"}), 400, "must be true or false")


@pytest.mark.parametrize("send, status, message", [
    (lambda c: c.get("/"), 400, "missing 'query': send the text as 'query': in the URL (?query=...), as a form "
                                "field, or as a JSON body {\"query\": \"...\"}"),
    (lambda c: c.post("/", json={"text": "x"}), 400,
     "missing 'query' in the JSON body: send the text as 'query': in the URL (?query=...), as a form field, "
     "or as a JSON body {\"query\": \"...\"}"),
    (lambda c: c.post("/", data={"query": " "}), 400, "'query' is empty: send some text to classify"),
    (lambda c: c.post("/", json={"query": 42}), 400, "'query' must be a string"),
    (lambda c: c.get("/", query_string={"query": "a" * 10_001}), 413,
     "'query' is too long: 10001 characters, the limit is 10000"),
    (lambda c: c.get("/", query_string={"query": "x", "explain": "yes"}), 400,
     "'explain' must be 1 or 0 (or true/false), not 'yes'"),
    (lambda c: c.post("/", data={"query": "x", "explain": "2"}), 400,
     "'explain' must be 1 or 0 (or true/false), not '2'"),
    (lambda c: c.post("/", json={"query": "x", "explain": 1}), 400,
     "'explain' must be true or false in a JSON body, not 1"),
    # The query's problem is reported before the flag's, wherever they are.
    (lambda c: c.post("/", json={"query": "", "explain": 1}), 400, "'query' is empty: send some text to classify"),
    (lambda c: c.get("/", query_string={"query": "x"}, json={"explain": "1"}), 400,
     "'explain' must be true or false in a JSON body, not '1'"),
], ids=["none", "json-none", "form-blank", "json-number", "too-long", "url-flag", "form-flag", "json-flag",
        "query-before-flag", "url-query-json-flag"])
def test_error_messages_are_exact(client, send, status, message):
    response = send(client)
    assert (response.status_code, response.json) == (status, {"message": message})


def test_the_json_flag_is_read_with_a_query_in_the_url(client):
    response = client.get("/", query_string={"query": "boring"}, json={"explain": True})
    assert response.status_code == 200 and "explanation" in response.json


def test_a_query_at_the_limit_is_accepted(client):
    assert client.post("/", json={"query": "good " * 2000}).status_code == 200  # 10,000 characters


def test_a_body_over_the_size_limit_is_refused_before_reading(client):
    response = client.post("/", data=json.dumps({"query": "x", "pad": "y" * 200_000}),
                           content_type="application/json")
    assert_error(response, 413, "")


@pytest.mark.parametrize("path", ["/nope", "/ratings/extra", "/favicon.ico"])
def test_unknown_paths_answer_json_404(client, path):
    assert_error(client.get(path), 404, "not found")


def test_health_names_the_model_versions(served_client):
    client = served_client
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    for name in ("sentiment", "ratings"):
        manifest = json.loads((MODELS_DIR / name / "manifest.json").read_text())
        assert body["models"][name]["version"] == manifest["version"]
        assert body["models"][name]["labels"] == manifest["labels"]


def test_the_query_limit_is_configurable(sqlite_url):
    small = make_app(sqlite_url, MAX_QUERY_CHARS=5).test_client()
    assert small.get("/", query_string={"query": "12345"}).status_code == 200
    assert_error(small.get("/", query_string={"query": "123456"}), 413, "the limit is 5")


def test_predictions_are_not_rate_limited_by_default(client):
    assert client.application.config["PREDICT_RATE_LIMIT"] == ""
    assert {client.get("/", query_string={"query": f"text {i}"}).status_code for i in range(60)} == {200}


def test_a_prediction_rate_limit_can_be_set(sqlite_url):
    client = make_app(sqlite_url, PREDICT_RATE_LIMIT="3 per minute").test_client()
    assert [client.get("/", query_string={"query": "fine"}).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/", query_string={"query": "fine"})
    assert_error(limited, 429, "too many requests from this client: the limit is 3 per 1 minute")
    assert int(limited.headers["Retry-After"]) > 0
    # Each endpoint has its own count; batches are limited too; feedback keeps its own limit.
    assert client.get("/ratings", query_string={"query": "fine"}).status_code == 200
    batches = [client.post("/batch", json={"queries": ["a", "b"]}).status_code for _ in range(4)]
    assert batches == [200, 200, 200, 429]
    feedback = {"model": "sentiment", "query": "fine", "label": "Positive"}
    assert client.post("/feedback", json=feedback).status_code == 201


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    from sentiment_clf.config import Settings

    assert (Settings().host, Settings().port) == ("127.0.0.1", 5000)
    monkeypatch.setenv("SENTIMENT_CLF_MAX_QUERY_CHARS", "7")
    monkeypatch.setenv("SENTIMENT_CLF_DATA_DIR", str(tmp_path))
    app = create_app({"TESTING": True, "MODEL_DIR": MODELS_DIR})
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    assert (tmp_path / "feedback.sqlite").exists()
    assert app.config["MAX_QUERY_CHARS"] == 7
    assert app.debug is False


def test_an_unknown_setting_in_the_environment_stops_the_start_and_names_the_closest(monkeypatch, tmp_path):
    """An operator's typo was silently ignored; now neither the app nor gunicorn starts."""
    import subprocess

    from sentiment_clf.config import unknown_variables

    assert unknown_variables({"SENTIMENT_CLF_WORKER": "4", "SENTIMENT_CLF_TEST_DATA": "x", "DATABASE_URL": "y",
                              "SENTIMENT_CLF_DATABASE_URL": "z", "SENTIMENT_CLF_PORT": "1", "OTHER": "z",
                              "SENTIMENT_CLF_QWERTY": "1"}) == [
        "SENTIMENT_CLF_QWERTY is not a setting; sentiment-clf config lists them",
        "SENTIMENT_CLF_WORKER is not a setting (did you mean SENTIMENT_CLF_WORKERS?)"]
    monkeypatch.setenv("SENTIMENT_CLF_MAX_QUERY_CHAR", "7")
    with pytest.raises(ValueError, match=r"SENTIMENT_CLF_MAX_QUERY_CHAR is not a setting \(did you mean "
                                         r"SENTIMENT_CLF_MAX_QUERY_CHARS\?\)"):
        create_app({"TESTING": True, "MODEL_DIR": MODELS_DIR})
    from bench.harness import ROOT, gunicorn_command

    gunicorn = gunicorn_command()
    if gunicorn:
        started = subprocess.run([gunicorn, "--chdir", "sentiment-clf", "app:create_app()"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "SENTIMENT_CLF_KEEP_ALIVE": "5",
                                      "SENTIMENT_CLF_DATA_DIR": str(tmp_path)})
        assert started.returncode != 0
        assert "SENTIMENT_CLF_KEEP_ALIVE is not a setting (did you mean SENTIMENT_CLF_KEEPALIVE?)" in started.stderr



def test_the_documented_configuration_table_is_the_settings(monkeypatch):
    """Declared once: the documentation's table is what config.py generates from the fields."""
    from sentiment_clf.config import markdown_table

    from conftest import ROOT

    assert markdown_table() in (ROOT / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")


def test_a_missing_model_stops_the_app_from_starting(tmp_path):
    with pytest.raises(ModelFileError, match="no model manifest"):
        create_app({"MODEL_DIR": tmp_path})


@pytest.mark.parametrize("error, status, retry_after", [
    (errors.NotServed("no such tier here"), 404, None),
    (errors.IdempotencyKeyReused("that key named another answer"), 422, None),
    (errors.RateLimited("5 per minute", 12), 429, "12"),
    (errors.StorageUnavailable("the database is not answering", retry_after=1), 503, "1"),
    (errors.OverBudget(retry_after=3), 503, "3"),
])
def test_every_service_error_answers_json_with_its_status_on_any_route(client, monkeypatch, error, status,
                                                                       retry_after):
    # One mapping for the API's routes (Flask-RESTful) and the others: a route of each raises it.
    app = client.application
    monkeypatch.setattr(app.view_functions["health"].view_class, "get", lambda self: (_ for _ in ()).throw(error))
    app.view_functions["metrics"] = lambda: (_ for _ in ()).throw(error)
    for path in ("/health", "/metrics"):
        response = client.get(path)
        assert (response.status_code, response.json) == (status, {"message": error.message}), path
        assert response.headers.get("Retry-After") == retry_after


def test_the_registry_folds_at_the_settings_default_unless_told():
    # Every process on one database folds at the same answers: the app passes the setting,
    # and a registry made without it (a test, a tool) folds where the setting's default does.
    from sentiment_clf.config import Settings
    from sentiment_clf.feedback import ModelRegistry

    default = inspect.signature(ModelRegistry).parameters["checkpoint_every"].default
    assert default == Settings.model_fields["checkpoint_every"].default
