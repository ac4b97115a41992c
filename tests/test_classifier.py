"""The models in a Python process (``from sentiment_clf import Classifier``): the same
answers as the HTTP API's batches, without Flask or gunicorn."""
import json
import subprocess
import sys

import pytest
import requests

import util
from sentiment_clf import Classifier
from sentiment_clf.tasks import endpoint_models

# Besides movie sentences: a question, a tweet, a review long enough for several
# windows of the encoder and several sentences of the fast tier, and odd text.
OTHERS = ["What is the capital of Peru?", "RT @user: you are a wonderful person http://t.co/x #love",
          "", "   ", "\u00e9l\u00e8ve na\u00efve caf\u00e9 \U0001f600"]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


@pytest.fixture(scope="module")
def texts(sst_dir) -> list[str]:
    lines = (sst_dir / "test.txt").read_text(encoding="utf-8").splitlines()
    sentences = [util.sst_to_plain(" ".join(util.parse_tree(line)[0][1])) for line in lines]
    review = " ".join(sentences[200:260])  # about 1,300 words: several windows
    return sentences[:200 - len(OTHERS) - 1] + [review] + OTHERS


def test_texts_are_200(texts):
    assert len(texts) == 200


@pytest.mark.parametrize("variant", ["fast", "accurate"])
@pytest.mark.parametrize("spec", endpoint_models(), ids=lambda spec: spec.name)
def test_every_model_answers_as_the_http_batch_does(live_server, classifier, texts, spec, variant):
    asked = [text for text in texts if text.strip()]  # the API refuses an empty query with a 400
    response = requests.post(f"{live_server.url}{spec.batch_endpoint}",
                             json={"queries": asked, "variant": variant}, timeout=120)
    assert response.status_code == 200, response.text
    found = classifier.predict(asked, model=spec.name, variant=variant)
    assert json.loads(json.dumps(found)) == response.json()["results"]
    if variant == "accurate" or spec.by_sentence:  # the long review was read in parts
        assert any(answer["read"]["windows"] > 1 for answer in found)


def test_explanations_and_levels_are_the_apis_too(live_server, classifier):
    body = {"queries": ["Who wrote Hamlet?"], "explain": True}
    response = requests.post(f"{live_server.url}/questions/batch", json=body, timeout=30)
    found = classifier.predict(["Who wrote Hamlet?"], model="questions", explain=True)
    assert json.loads(json.dumps(found)) == response.json()["results"]
    assert "fine" in found[0] and "explanation" in found[0]


@pytest.mark.parametrize("call, error, fragment", [
    (lambda c: c.predict("one text"), TypeError, "list of strings"),
    (lambda c: c.predict([b"bytes"]), TypeError, "must be a string"),
    (lambda c: c.predict(["a"], model="questions-fine"), ValueError, "no model 'questions-fine'"),
    (lambda c: c.predict(["a"], variant="slow"), ValueError, "variant must be one of fast, accurate"),
])
def test_bad_arguments_are_named(classifier, call, error, fragment):
    with pytest.raises(error, match=fragment):
        call(classifier)


def test_without_the_accurate_tier_it_says_so():
    fast_only = Classifier.load(accurate=False)
    assert fast_only.predict(["fine"])[0]["variant"] == "fast"
    with pytest.raises(ValueError, match="accurate tier is not loaded"):
        fast_only.predict(["fine"], variant="accurate")
    assert fast_only.predict([]) == []


def test_using_it_imports_no_web_server():
    code = ("import sys\nfrom sentiment_clf import Classifier\nClassifier.load(accurate=False).predict(['fine'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'flask', 'flask_restful', 'werkzeug', 'gunicorn', 'gevent', 'sqlalchemy'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


@pytest.mark.parametrize("variant", ["fast", "accurate"])
def test_an_empty_text_gets_an_answer_not_an_error(classifier, variant):
    # The API refuses an empty query (a 400); in a batch job it is one row among many.
    for answer in classifier.predict(["", "   "], model="ratings", variant=variant):
        assert sum(answer["probabilities"].values()) == pytest.approx(1)
