"""The accurate tier over HTTP: variant=accurate on every endpoint, listing, feedback, the
page, retraining a head through the gate, and micro-batching inside a real server."""
import concurrent.futures
import threading

import numpy as np
import pytest
import requests

from sentiment_clf.tasks import MODELS

from conftest import MODELS_DIR, make_app, need

ACCURATE = MODELS_DIR / "accurate"
ENDPOINTS = {"/": "sentiment", "/ratings": "ratings", "/hatespeech": "hatespeech", "/questions": "questions"}


@pytest.fixture()
def accurate_app(sqlite_url):
    need((ACCURATE / "manifest.json").exists(), f"no accurate model in {ACCURATE} (make accurate-model)")
    return make_app(sqlite_url)


@pytest.fixture()
def client(accurate_app):
    return accurate_app.test_client()


def check_answer(body, name, variant):
    labels = list(MODELS[name].labels)
    assert body["variant"] == variant
    assert len(body["version"]) == 12
    assert list(body["probabilities"]) == labels
    assert body["prediction"] in labels
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["confidence"] == max(body["probabilities"].values())


@pytest.mark.parametrize("path,name", ENDPOINTS.items())
@pytest.mark.parametrize("send", [
    lambda c, p: c.get(p, query_string={"query": "that movie was boring", "variant": "accurate"}),
    lambda c, p: c.post(p, data={"query": "that movie was boring", "variant": "accurate"}),
    lambda c, p: c.post(p, json={"query": "that movie was boring", "variant": "accurate"}),
], ids=["url", "form", "json"])
def test_every_endpoint_answers_on_the_accurate_tier(client, path, name, send):
    response = send(client, path)
    assert response.status_code == 200
    check_answer(response.json, name, "accurate")
    fast = client.get(path, query_string={"query": "that movie was boring"}).json
    check_answer(fast, name, "fast")
    assert fast["version"] != response.json["version"]
    if name == "questions":
        check_answer(response.json["fine"], "questions-fine", "accurate")


def test_the_accurate_tier_is_right_where_the_fast_one_is_wrong(client):
    # The examples: the fast hate-speech model calls these offensive.
    for text in ("This is a really fantastic Thai restaurant which is definitely worth a visit.",
                 "you are a wonderful person, thank you"):
        body = client.get("/hatespeech", query_string={"query": text, "variant": "accurate"}).json
        assert body["prediction"] == "neither", (text, body)
    assert client.get("/", query_string={"query": "not at all the masterpiece it wants to be",
                                         "variant": "accurate"}).json["prediction"] == "Negative"
    assert client.get("/questions", query_string={"query": "Who wrote Hamlet ?",
                                                  "variant": "accurate"}).json["prediction"] == "human"


def test_batches_on_the_accurate_tier_match_single_answers(client):
    texts = ["a gorgeous, witty film", "a dull and tedious mess", "it is a movie"]
    batch = client.post("/ratings/batch", json={"queries": texts, "variant": "accurate"})
    assert batch.status_code == 200
    for text, result in zip(texts, batch.json["results"], strict=True):
        check_answer(result, "ratings", "accurate")
        single = client.post("/ratings", json={"query": text, "variant": "accurate"}).json
        assert result["prediction"] == single["prediction"]
        # int8 activations are quantized per batch, so a text's probabilities move with
        # what shares its batch (README: "Two tiers")
        for label, p in single["probabilities"].items():
            assert result["probabilities"][label] == pytest.approx(p, abs=0.35)
    fine = client.post("/questions/batch", json={"queries": ["Who wrote Hamlet ?"], "variant": "accurate"}).json
    check_answer(fine["results"][0]["fine"], "questions-fine", "accurate")


def test_explain_on_the_accurate_tier_leaves_each_word_out(client):
    body = client.get("/", query_string={"query": "a dull and tedious film", "variant": "accurate",
                                         "explain": "1"}).json
    why = body["explanation"]
    assert why["method"] == "leave-one-word-out"
    words = {term["term"] for term in why["toward"] + why["away"]}
    assert words <= {"a", "dull", "and", "tedious", "film"}
    assert {"dull", "tedious"} & {term["term"] for term in why["toward"]}
    assert all(term["weight"] > 0 for term in why["toward"])
    assert all(term["weight"] < 0 for term in why["away"])


def test_a_bad_variant_is_a_clear_400(client):
    for response in (client.get("/", query_string={"query": "good", "variant": "slow"}),
                     client.post("/", json={"query": "good", "variant": 3}),
                     client.post("/batch", json={"queries": ["good"], "variant": "turbo"}),
                     client.post("/feedback", json={"model": "sentiment", "query": "good", "label": "Positive",
                                                    "variant": "x"})):
        assert response.status_code == 400
        assert "variant" in response.json["message"]


def test_the_default_variant_is_a_setting(sqlite_url):
    need((ACCURATE / "manifest.json").exists(), "no accurate model")
    client = make_app(sqlite_url, DEFAULT_VARIANT="accurate").test_client()
    assert client.get("/", query_string={"query": "good"}).json["variant"] == "accurate"
    assert client.get("/", query_string={"query": "good", "variant": "fast"}).json["variant"] == "fast"
    assert client.get("/health").json["default_variant"] == "accurate"


def test_health_models_and_the_document_list_both_tiers(client):
    health = client.get("/health").json
    assert set(health["accurate"]) == set(MODELS) == set(health["models"])
    listed = {(m["name"], m["variant"]) for m in client.get("/models").json["models"]}
    assert listed == {(name, variant) for name in MODELS for variant in ("fast", "accurate")}
    document = client.get("/openapi.json").json
    parameters = {p["name"] for p in document["paths"]["/"]["get"]["parameters"]}
    assert "variant" in parameters


def test_models_says_which_accurate_head_has_a_partner_and_what_each_learned_from(client):
    listed = {m["name"]: m for m in client.get("/models").json["models"] if m["variant"] == "accurate"}
    partner = listed["hatespeech"]["partner"]
    assert 0 < partner["weight"] < 1 and partner["classifier"].startswith("logistic regression")
    assert partner["trained_on"] == "17,843 training texts" and partner["weight_chosen_on"] == "1,983 dev texts"
    assert all("partner" not in entry for name, entry in listed.items() if name != "hatespeech")
    assert [listed[name]["training_data"]["phrases"] for name in ("sentiment", "hatespeech", "questions")] == \
        [167806, 17843, 3924]


def test_feedback_records_the_tier_the_user_saw(client, accurate_app):
    accurate = client.get("/", query_string={"query": "an odd little film", "variant": "accurate"}).json
    response = client.post("/feedback", json={"model": "sentiment", "query": "an odd little film",
                                              "label": "Positive", "variant": "accurate"})
    assert response.status_code == 201
    row = accurate_app.extensions["sentiment_clf"].storage.get_feedback(response.json["id"])
    assert (row.model_version, row.prediction) == (accurate["version"], accurate["prediction"])


def test_the_page_shows_the_accurate_answer_beside_the_fast_one(client):
    page = client.post("/ui", data={"review": "a dull and tedious film"}).get_data(as_text=True)
    for element in ("result-sentiment", "result-sentiment-accurate", "result-ratings", "result-ratings-accurate"):
        assert f'id="{element}"' in page
    thanks = client.post("/ui/feedback", data={"model": "sentiment", "variant": "accurate", "review": "a dull film",
                                               "prediction": "Negative", "verdict": "correct"})
    assert thanks.status_code == 200
    assert "accurate" in thanks.get_data(as_text=True)


def test_a_retrained_head_is_published_through_the_gate_served_and_rolled_back(accurate_app):
    """Stored answers reach the accurate tier by a retrain: a version in the database that
    every server picks up, and that rollback takes back."""
    from sentiment_clf.serving.accurate import PUBLISHED_PREFIX, load_accurate
    from sentiment_clf.training.retrain_accurate import retrain_head

    services = accurate_app.extensions["sentiment_clf"]
    client = accurate_app.test_client()
    before = client.get("/questions", query_string={"query": "Who wrote Hamlet ?", "variant": "accurate"}).json
    for text in ("Who painted the Mona Lisa ?", "Who invented the telephone ?"):
        assert client.post("/feedback", json={"model": "questions", "query": text, "label": "human",
                                              "variant": "accurate"}).status_code == 201
    head = load_accurate(ACCURATE, threads=1)["questions"]
    texts = ["Who wrote Hamlet ?", "What is the capital of Peru ?", "How many legs has a spider ?"] * 20
    targets = np.array([3, 4, 5] * 20)  # human, location, numeric
    published, summary = retrain_head(head, (texts, targets, texts, targets), services.storage, tolerance=1.0)
    assert published and summary["feedback_learned"] == 2
    services.registry.sync()
    after = client.get("/questions", query_string={"query": "Who wrote Hamlet ?", "variant": "accurate"}).json
    assert after["version"] == summary["version"] != before["version"]
    listed = {m["version"] for m in client.get("/models").json["models"] if m["variant"] == "accurate"}
    assert summary["version"] in listed
    services.storage.rollback(PUBLISHED_PREFIX + "questions")
    services.registry.sync()
    assert client.get("/questions", query_string={"query": "Who wrote Hamlet ?",
                                                  "variant": "accurate"}).json["version"] == before["version"]


def test_a_worse_retrained_head_is_not_published(accurate_app):
    from sentiment_clf.serving.accurate import load_accurate
    from sentiment_clf.training.retrain_accurate import retrain_head

    services = accurate_app.extensions["sentiment_clf"]
    head = load_accurate(ACCURATE, threads=1)["sentiment"]
    texts = ["a wonderful film", "a dreadful film"] * 10
    wrong = np.array([0, 1] * 10)  # the opposite labels
    right = np.array([1, 0] * 10)
    published, summary = retrain_head(head, (texts, wrong, texts, right), services.storage, tolerance=0.0)
    assert not published
    assert summary["candidate_accuracy"] < summary["serving_accuracy"]


def test_concurrent_requests_in_a_real_server_get_their_own_texts_answers(live_server):
    need((ACCURATE / "manifest.json").exists(), "no accurate model")
    from sentiment_clf.serving.accurate import load_accurate

    texts = [f"a {adjective} film about {topic}" for adjective in ("wonderful", "dreadful", "quiet", "loud")
             for topic in ("love", "war", "dogs", "the sea", "money", "music", "cooking", "trains")]
    head = load_accurate(ACCURATE, threads=1)["sentiment"]
    expected = {text: head.predict_proba([text])[0] for text in texts}

    def ask(text):
        response = requests.get(f"{live_server.url}/", params={"query": text, "variant": "accurate"}, timeout=30)
        return text, response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, texts * 3))
    for text, status, body in answers:
        assert status == 200, body
        check_answer(body, "sentiment", "accurate")
        # Each answer is its own text's, exactly as the text alone gets it (each text runs
        # through the network alone, whatever else the worker is reading).
        assert body["probabilities"]["Positive"] == pytest.approx(float(expected[text][1]), abs=1e-6), text


def test_a_failing_batch_fails_only_its_own_requests_with_json(accurate_app):
    """Requests batched with a text that breaks the model get a JSON 500; the others, in
    other batches, their answers. Run through a threaded server so requests overlap."""
    from werkzeug.serving import make_server

    encoder = accurate_app.extensions["sentiment_clf"].accurate["sentiment"].encoder
    read, batches, lock = encoder.read, [], threading.Lock()

    def fragile(texts):
        with lock:
            batches.append(list(texts))
        if any("poison" in text for text in texts):
            raise RuntimeError("this batch breaks")
        return [read(text) for text in texts]

    encoder.batcher._run = fragile
    encoder.batcher.max_wait = 0.05  # wide batches, so some overlap the poison and some don't
    server = make_server("127.0.0.1", 0, accurate_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        texts = [f"film number {i}" for i in range(40)]
        texts[20] = "poison film"

        def ask(text):
            response = requests.get(url, params={"query": text, "variant": "accurate"}, timeout=30)
            return text, response.status_code, response.json()

        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(ask, texts))
    finally:
        server.shutdown()
    poisoned = {text for batch in batches if any("poison" in t for t in batch) for text in batch}
    for text, status, body in answers:
        if text in poisoned:
            assert status == 500 and "accurate model failed" in body["message"]
        else:
            assert status == 200 and body["variant"] == "accurate"
    assert "poison film" in poisoned
    assert len(poisoned) < len(texts)  # other batches answered
