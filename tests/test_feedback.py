"""POST /feedback, GET /models and the /ui page, through Flask's test client."""
import pytest

from sentiment_clf.feedback.store import Storage

from conftest import make_app

TEXT = "an utterly forgettable , bland film"


@pytest.fixture()
def storage(sqlite_url):
    return Storage(sqlite_url)


def send(client, headers=None, environ_base=None, **body):
    return client.post("/feedback", json={"model": "sentiment", "query": TEXT, "label": "Positive", **body},
                       headers=headers or {}, environ_base=environ_base or {})


def test_feedback_is_stored_then_acknowledged(served_client, storage):
    client = served_client
    before = client.get("/", query_string={"query": TEXT}).json
    response = send(client)
    assert response.status_code == 201
    assert response.json == {"id": response.json["id"], "learned": True}
    row = storage.get_feedback(response.json["id"])
    assert (row.model, row.text, row.label) == ("sentiment", TEXT, "Positive")
    assert row.prediction == before["prediction"] == "Negative"
    assert row.model_version == client.get("/health").json["models"]["sentiment"]["version"].split("+")[0]
    after = client.get("/", query_string={"query": TEXT}).json
    assert after["probabilities"]["Positive"] > before["probabilities"]["Positive"]


def test_ratings_feedback_takes_a_rating_by_name(client, storage):
    response = client.post("/feedback", json={"model": "ratings", "query": TEXT, "label": "somewhat negative"})
    assert response.status_code == 201
    assert storage.get_feedback(response.json["id"]).label == "somewhat negative"


@pytest.mark.parametrize("body, fragment", [
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"model": None}, "unknown model None"),
    ({"label": "positive"}, "unknown label 'positive' for sentiment"),
    ({"label": 1}, "unknown label 1"),
    ({"query": ""}, "'query' is empty"),
    ({"query": "   "}, "'query' is empty"),
    ({"query": 5}, "must be a string"),
    ({"query": "x" * 10_001}, "the limit is 10000"),
])
def test_bad_feedback_is_refused_and_nothing_is_stored(client, storage, body, fragment):
    response = send(client, **body)
    assert response.status_code == 400
    assert fragment in response.json["message"]
    assert storage.feedback_counts() == {}


@pytest.mark.parametrize("body, message", [
    ({"model": "nope", "label": "nope", "query": ""},
     "unknown model 'nope': choose one of ['hatespeech', 'questions', 'questions-fine', 'ratings', 'sentiment']"),
    ({"label": "positive", "query": ""},
     "unknown label 'positive' for sentiment: choose one of ['Negative', 'Positive']"),
    ({"label": None}, "unknown label None for sentiment: choose one of ['Negative', 'Positive']"),
    ({"query": None}, "'query' must be a string"),
    ({"query": "x" * 10_001}, "'query' is too long: 10001 characters, the limit is 10000"),
], ids=["model-first", "label-before-query", "label-null", "query-null", "too-long-is-400"])
def test_feedback_reports_its_first_problem_exactly(client, storage, body, message):
    response = send(client, **body)
    assert (response.status_code, response.json) == (400, {"message": message})
    assert storage.feedback_counts() == {}


def test_a_text_with_a_nul_character_is_a_400_on_either_database_and_stores_nothing(database_url):
    """PostgreSQL's text cannot hold NUL: refused up front on both databases (else a client
    got a 503 "try again" for ever on PostgreSQL, and SQLite stored it)."""
    client = make_app(database_url).test_client()
    storage = client.application.extensions["sentiment_clf"].storage
    response = client.post("/feedback", json={"model": "sentiment", "query": "fine\x00film", "label": "Positive"})
    assert response.status_code == 400
    assert response.json["message"] == "'query' holds a NUL character (\\u0000), which cannot be stored: remove it"
    assert storage.feedback_after(0) == []
    page = client.post("/ui", data={"review": "a fine\x00film indeed"}).get_data(as_text=True)
    assert "holds a NUL character" in page
    assert client.get("/", query_string={"query": "fine\x00film"}).status_code == 200  # a prediction stores nothing


def test_feedback_without_a_query_names_it(client):
    response = client.post("/feedback", json={"model": "ratings", "label": "neutral"})
    assert response.json == {"message": "missing 'query': the text the answer is about"}


def test_every_model_takes_feedback_with_its_own_labels(client, storage):
    from sentiment_clf.tasks import MODELS

    for name, spec in MODELS.items():
        feedback = {"model": name, "query": TEXT, "label": spec.labels[-1]}
        assert client.post("/feedback", json=feedback).status_code == 201
    assert storage.feedback_counts() == {name: 1 for name in MODELS}


@pytest.mark.parametrize("data, content_type, fragment", [
    ("{oops", "application/json", "not valid JSON"),
    ('["a"]', "application/json", "must be an object"),
    ('{"model": "sentiment", "label": "Positive"}', "application/json", "missing 'query'"),
])
def test_malformed_feedback_bodies(client, storage, data, content_type, fragment):
    response = client.post("/feedback", data=data, content_type=content_type)
    assert response.status_code == 400 and fragment in response.json["message"]
    assert storage.feedback_counts() == {}


def test_feedback_only_accepts_post(client):
    assert client.get("/feedback").status_code == 405


def test_a_retry_with_the_same_idempotency_key_stores_once(client, storage):
    first = client.post("/feedback", json={"model": "sentiment", "query": TEXT, "label": "Positive"},
                        headers={"Idempotency-Key": "abc-123"})
    again = client.post("/feedback", json={"model": "sentiment", "query": TEXT, "label": "Positive"},
                        headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert storage.feedback_counts() == {"sentiment": 1}
    bad_key = client.post("/feedback", json={"model": "sentiment", "query": TEXT, "label": "Positive"},
                          headers={"Idempotency-Key": "has spaces"})
    assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json["message"]
    assert storage.feedback_counts() == {"sentiment": 1}


def test_an_idempotency_key_belongs_to_the_client_that_sent_it(sqlite_url):
    """Client B sending A's key (and even A's answer) stores B's own answer: it neither gets
    A's id back (which would confirm a guess of A's answer) nor, by using a key first, makes
    A's real answer a 422 that is never stored."""
    client = make_app(sqlite_url, TRUSTED_PROXIES="127.0.0.1").test_client()
    storage = client.application.extensions["sentiment_clf"].storage
    a, b = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    answer = {"model": "sentiment", "query": TEXT, "label": "Positive"}
    first = client.post("/feedback", json=answer, headers={**a, "Idempotency-Key": "order-1001"})
    guess = client.post("/feedback", json=answer, headers={**b, "Idempotency-Key": "order-1001"})
    assert first.status_code == guess.status_code == 201 and guess.json["id"] != first.json["id"]
    junk = client.post("/feedback", json={**answer, "query": "junk"}, headers={**b, "Idempotency-Key": "order-1002"})
    real = client.post("/feedback", json={**answer, "query": "the real answer"},
                       headers={**a, "Idempotency-Key": "order-1002"})
    assert junk.status_code == real.status_code == 201
    assert storage.get_feedback(real.json["id"]).text == "the real answer"
    retry = client.post("/feedback", json=answer, headers={**a, "Idempotency-Key": "order-1001"})
    assert retry.status_code == 201 and retry.json == first.json  # a's own retry: a's first answer
    assert len(storage.feedback_after(0)) == 4
    assert all("order-100" not in (row.request_key or "") for row in _rows(storage))  # stored hashed


def _rows(storage):
    from sqlalchemy import select

    from sentiment_clf.feedback.schema import feedback

    return storage.call(lambda conn: conn.execute(select(feedback)).all())


@pytest.mark.parametrize("body", [{"model": "ratings", "label": "neutral"}, {"query": "another film"},
                                  {"label": "Negative"}], ids=["model", "query", "label"])
def test_an_idempotency_key_reused_with_another_answer_is_a_422(client, storage, body):
    """As the IETF draft "The Idempotency-Key HTTP Header Field" says: a key reused
    with a different payload is refused with 422, and nothing new is stored."""
    first = send(client, headers={"Idempotency-Key": "abc-123"})
    reused = client.post("/feedback", json={"model": "sentiment", "query": TEXT, "label": "Positive", **body},
                         headers={"Idempotency-Key": "abc-123"})
    assert reused.status_code == 422
    assert reused.json == {"message": "the Idempotency-Key 'abc-123' was already used for another answer "
                                      "(a different model, query or label); use a new key for a new answer"}
    assert storage.feedback_counts() == {"sentiment": 1}
    assert send(client, headers={"Idempotency-Key": "abc-123"}).json["id"] == first.json["id"]


def test_one_client_is_rate_limited_across_both_routes(sqlite_url):
    client = make_app(sqlite_url, FEEDBACK_RATE_LIMIT="3 per minute").test_client()
    assert send(client).status_code == 201
    page = client.post("/ui/feedback", data={"model": "sentiment", "review": "a dull film", "prediction": "Negative",
                                             "verdict": "correct"})
    assert page.status_code == 200
    assert send(client, query="a third text", headers={"Idempotency-Key": "k3"}).status_code == 201
    limited = send(client, query="something else entirely")
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.json["message"].startswith("too many answers from this client: the limit is 3 per 1 minute")
    page = client.post("/ui/feedback", data={"model": "sentiment", "review": "a dull film", "prediction": "Negative",
                                             "verdict": "incorrect"})
    assert page.status_code == 429 and page.content_type.startswith("text/html")
    assert "please wait a minute" in page.text and int(page.headers["Retry-After"]) > 0
    retry = send(client, query="a third text", headers={"Idempotency-Key": "k3"})  # a retry is not a new answer
    assert retry.status_code == 201
    assert Storage(sqlite_url).feedback_counts() == {"sentiment": 3}
    assert client.get("/", query_string={"query": TEXT}).status_code == 200  # predictions are not limited
    other = send(client, query="something else entirely", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 201  # another client has its own count


def test_beyond_its_learning_budget_a_client_is_stored_not_learned(sqlite_url):
    client = make_app(sqlite_url, CLIENT_LEARNING_BUDGET="1 per day").test_client()
    assert send(client).json["learned"] is True  # a new client's first answer is learned at once
    before = client.get("/", query_string={"query": "a dull film"}).json["probabilities"]["Positive"]
    held = send(client, query="a dull film")
    assert held.status_code == 201
    assert held.json == {"id": held.json["id"], "learned": False,
                         "reason": "this client's answers beyond its learning budget are stored but not learned, "
                                   "now or by a retrain; a trusted client's same answer is learned at once"}
    assert client.get("/", query_string={"query": "a dull film"}).json["probabilities"]["Positive"] == before
    assert send(client).json["reason"].startswith("the same answer was learned before")
    page = client.post("/ui/feedback", data={"model": "sentiment", "review": "a tired film", "prediction": "Negative",
                                             "verdict": "incorrect"})
    assert "Thank you!" in page.text and "has not learned it now" in page.text
    assert "has learned from it" not in page.text


def test_a_trusted_api_key_is_learned_at_once_and_an_unknown_one_is_a_401(sqlite_url):
    from sentiment_clf.feedback.policy import new_key

    key, entry = new_key("ops")
    client = make_app(sqlite_url, CLIENT_LEARNING_BUDGET="1 per day", TRUSTED_API_KEYS=entry).test_client()
    send(client, query="a spent budget")
    answers = [send(client, query=f"a dull film {i}", label="Positive", headers=headers).json
               for i, headers in enumerate([{"Authorization": f"Bearer {key}"}, {"X-API-Key": key}])]
    assert [a["learned"] for a in answers] == [True, True]
    rows = Storage(sqlite_url).feedback_after(0)
    assert [r.client for r in rows[1:]] == ["key:ops", "key:ops"] and rows[0].client.startswith("ip:")
    assert "127.0.0.1" not in rows[0].client
    for headers in [{"Authorization": "Bearer nope"}, {"X-API-Key": key + "x"}]:
        refused = send(client, query="a dull film", headers=headers)
        assert refused.status_code == 401 and refused.json["message"].startswith("unknown API key")
    assert len(Storage(sqlite_url).feedback_after(0)) == 3


def test_models_lists_what_is_served(served_client):
    client = served_client
    send(client)
    send(client, label="Negative", query="a dull film", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    listed = client.get("/models").json["models"]
    models = {m["name"]: m for m in listed if m["variant"] == "fast"}
    assert set(models) == {"sentiment", "ratings", "hatespeech", "questions", "questions-fine"}
    assert {m["name"] for m in listed if m["variant"] == "accurate"} == set(models)
    sentiment = models["sentiment"]
    assert sentiment["endpoint"] == "/" and models["ratings"]["endpoint"] == "/ratings"
    assert models["questions-fine"]["endpoint"] == "/questions (fine)"
    assert (sentiment["classifier"], sentiment["learns_online"]) == ("nb", True)
    assert models["hatespeech"]["learns_online"] is False
    assert models["hatespeech"]["metrics"]["test_macro_f1"] > 0.6
    assert sentiment["labels"] == ["Negative", "Positive"]
    assert sentiment["training_data"] == {"phrases": 77616, "feedback_learned": 2}
    assert sentiment["feedback_stored"] == 2
    assert sentiment["version"].startswith(sentiment["base_version"] + "+fb")
    assert sentiment["metrics"]["test_accuracy"] > 0.818
    ratings = models["ratings"]
    assert ratings["feedback_stored"] == 0 and ratings["version"] == ratings["base_version"]


# -- the web page -------------------------------------------------------------

def test_the_page_has_a_form_and_fits_a_phone(client):
    page = client.get("/ui")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert '<form method="post" action="/ui"' in page.text and 'name="review"' in page.text
    assert "<script" not in page.text


@pytest.mark.parametrize("review, fragment", [
    ("", "at least 3 characters"), ("  a ", "at least 3 characters"),
    ("x" * 10_001, "the limit is 10,000"),
])
def test_too_short_or_long_reviews_get_a_message_on_the_page(client, review, fragment):
    page = client.post("/ui", data={"review": review})
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert fragment in page.text and 'role="alert"' in page.text


def test_the_result_shows_every_model_on_both_tiers_with_the_words_that_decided_it(served_client):
    from sentiment_clf.tasks import MODELS, endpoint_models

    client = served_client
    page = client.post("/ui", data={"review": TEXT}).text
    for spec in endpoint_models():
        assert f'id="result-{spec.name}"' in page and f'id="result-{spec.name}-accurate"' in page
    assert '<strong class="label">Negative</strong>' in page
    assert 'value="correct"' in page and 'value="incorrect"' in page
    # the labels of every model of more than two, for each tier
    assert page.count("<option") == 2 * sum(len(spec.labels) for spec in endpoint_models() if len(spec.labels) > 2)
    assert page.count('class="words toward"') >= 2 * len(endpoint_models()) - 1  # nearly every answer has some
    assert "<mark>forgettable</mark>" in page and "<mark>,</mark>" not in page  # words, not punctuation
    assert '<span class="level">' in page and any(label in page for label in MODELS["questions-fine"].labels)
    assert '<a href="/docs">' in page


@pytest.mark.parametrize("probability, shown", [
    (0.9995, "> 99.9%"), (0.999, "99.9%"), (0.996, "99.6%"), (0.994, "99%"), (0.5, "50%"), (1.0, "100%"),
    (0.0004, "< 0.1%"), (0.004, "0.4%"), (0.0, "0%")])
def test_the_page_never_rounds_a_probability_up_to_certainty(probability, shown):
    from sentiment_clf.web.ui import percent

    assert percent(probability) == shown


def test_incorrect_on_the_page_stores_the_other_label_and_the_model_learns(served_client, storage):
    client = served_client
    before = client.get("/", query_string={"query": TEXT}).json["probabilities"]["Positive"]
    page = client.post("/ui/feedback", data={"model": "sentiment", "review": TEXT, "prediction": "Negative",
                                             "verdict": "incorrect"})
    assert page.status_code == 200 and "Thank you!" in page.text
    [row] = storage.feedback_after(0)
    assert (row.text, row.label, row.prediction) == (TEXT, "Positive", "Negative")
    assert client.get("/", query_string={"query": TEXT}).json["probabilities"]["Positive"] > before


def test_a_rating_picked_on_the_page_is_stored(client, storage):
    page = client.post("/ui/feedback", data={"model": "ratings", "review": TEXT, "prediction": "negative",
                                             "label": "neutral"})
    assert "Thank you!" in page.text
    assert storage.feedback_after(0)[0].label == "neutral"


def test_a_tampered_answer_form_gets_a_page_not_json(client, storage):
    page = client.post("/ui/feedback", data={"model": "nope", "review": TEXT, "verdict": "correct"})
    assert page.status_code == 400 and page.content_type.startswith("text/html")
    assert "classify the review again" in page.text
    assert storage.feedback_counts() == {}


def test_correct_on_the_page_stores_the_prediction(client, storage):
    page = client.post("/ui/feedback", data={"model": "sentiment", "review": f"  {TEXT} ", "prediction": "Negative",
                                             "verdict": "correct"})
    assert page.status_code == 200 and "Thank you!" in page.text
    [row] = storage.feedback_after(0)
    assert (row.text, row.label) == (TEXT, "Negative")


@pytest.mark.parametrize("form, message", [
    ({"model": "sentiment", "review": "ab", "prediction": "Negative", "verdict": "correct"},
     "classify the review again"),
    ({"model": "sentiment", "review": "x" * 10_001, "prediction": "Negative", "verdict": "correct"},
     "classify the review again"),
    ({"model": "sentiment", "review": TEXT, "prediction": "Negative", "verdict": "maybe"},
     "Please choose the right answer."),
    ({"model": "sentiment", "review": TEXT, "prediction": "Meh", "verdict": "correct"},
     "Please choose the right answer."),
    ({"model": "ratings", "review": TEXT, "prediction": "neutral"}, "Please choose the right answer."),
    ({"model": "ratings", "review": TEXT, "label": "great"}, "Please choose the right answer."),
], ids=["short-review", "long-review", "bad-verdict", "bad-prediction", "no-label", "bad-label"])
def test_an_incomplete_answer_on_the_page_stores_nothing(client, storage, form, message):
    page = client.post("/ui/feedback", data=form)
    assert page.status_code == 400 and page.content_type.startswith("text/html")
    assert message in page.text
    assert storage.feedback_counts() == {}


def test_html_is_escaped(client):
    page = client.post("/ui", data={"review": "<script>alert(1)</script> great"}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_feedback_on_a_model_that_learns_by_retraining_is_stored_not_learned(client, storage):
    tweet = "these hoes aint loyal"
    before = client.get("/hatespeech", query_string={"query": tweet}).json
    response = client.post("/feedback", json={"model": "hatespeech", "query": tweet, "label": "neither"})
    assert response.status_code == 201
    assert storage.get_feedback(response.json["id"]).label == "neither"
    assert client.get("/hatespeech", query_string={"query": tweet}).json == before
    listed = {m["name"]: m for m in client.get("/models").json["models"]}["hatespeech"]
    assert (listed["feedback_stored"], listed["training_data"]["feedback_learned"]) == (1, 0)
    assert listed["version"] == listed["base_version"]
