"""An accurate answer is a function of the text alone: alone, in any batch, at any
concurrency, on any worker; and a long text is read whole, in windows.

Before, int8 dynamic quantization scaled a batch's activations together, and a label
changed for 4-9% of texts between alone and in a batch; padding moved answers by up
to 0.27. Now every text (every window) runs through the network on its own.
"""
from __future__ import annotations

import concurrent.futures
import random

import numpy as np
import pytest
import requests

from conftest import SHARED_DATA, make_app, need

HEADS = ("sentiment", "ratings", "hatespeech", "questions", "questions-fine")
ENDPOINTS = {"/": "sentiment", "/ratings": "ratings", "/hatespeech": "hatespeech", "/questions": "questions"}
SAME = 1e-6  # the bound; in practice the probabilities are bit for bit the same

NEUTRAL = [f"The film runs {n} minutes and was shot in {place}." for n, place in
           zip(range(90, 110), ["Ohio", "Wales", "Spain", "Peru", "Norway"] * 4, strict=True)]
PRAISE = ["It is a wonderful, moving, beautifully acted film.", "I loved every minute of it.",
          "A masterpiece: funny, warm and brilliant.", "The best film I have seen this year."] * 5
SCORN = ["It is a dreadful, boring, badly acted film.", "I hated every minute of it.",
         "A disaster: dull, cold and stupid.", "The worst film I have seen this year."] * 5


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """300 texts: SST test sentences, tweets and questions (every head's kind of text),
    and a few long ones read in several windows."""
    import util

    need((SHARED_DATA / "sst" / "test.txt").is_file(), f"the data sets are not in {SHARED_DATA}")
    sst = [util.sst_to_plain(p) for p in util.load_sst(SHARED_DATA / "sst" / "test.txt", roots_only=True)["phrase"]]
    tweets = util.load_hatespeech(SHARED_DATA / "hatespeech" / "labeled_data.csv")["text"].tolist()
    questions = util.load_questions(SHARED_DATA / "questions" / "dataset.csv")["text"].tolist()
    rng = random.Random(18)
    long = [" ".join(NEUTRAL + PRAISE), " ".join(NEUTRAL + SCORN), " ".join(rng.sample(sst, 30))]
    return rng.sample(sst, 150) + rng.sample(tweets, 72) + rng.sample(questions, 75) + long


def test_each_text_runs_through_the_network_alone_and_unpadded(accurate_heads, texts):
    """The mechanism: every forward pass holds one window of one text, with no padding."""
    encoder = accurate_heads["sentiment"].encoder
    session = encoder.session()
    shapes = []

    class Recording:
        def run(self, outputs, feeds):
            shapes.append((feeds["input_ids"].shape, bool(feeds["attention_mask"].all())))
            return session.run(outputs, feeds)

    encoder._session = Recording()
    try:
        accurate_heads["sentiment"].predict_proba(texts[:20] + texts[-3:])
        accurate_heads["sentiment"].predict_one(texts[-1])
    finally:
        encoder._session = session
    assert len(shapes) > 23  # the long texts took several windows
    assert all(shape[0] == 1 and unmasked for shape, unmasked in shapes)


def test_probabilities_are_the_same_alone_and_in_any_batch(accurate_heads, texts):
    rng = random.Random(7)
    alone = {name: np.stack([head.predict_one(t) for t in texts]) for name, head in accurate_heads.items()}
    for _ in range(3):  # three random mixes of batches of 1 to 32
        order = list(range(len(texts)))
        rng.shuffle(order)
        start = 0
        while start < len(order):
            size = rng.randint(1, 32)
            index = order[start:start + size]
            for name, head in accurate_heads.items():
                found = head.predict_proba([texts[i] for i in index])
                np.testing.assert_allclose(found, alone[name][index], rtol=0, atol=SAME)
            start += size


def test_spaces_around_and_between_words_do_not_change_the_answer(accurate_heads, texts):
    """The nearest thing to padding a user can send: runs of white space collapse."""
    head = accurate_heads["ratings"]
    for text in texts[:40]:
        padded = "   " + text.replace(" ", " \t ") + "\n" * 5
        np.testing.assert_allclose(head.predict_one(padded), head.predict_one(text), rtol=0, atol=SAME)


@pytest.fixture(scope="module")
def accurate_client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("determinism")
    return make_app(f"sqlite:///{folder}/feedback.sqlite").test_client()


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_a_batch_request_answers_each_text_as_a_single_request_does(accurate_client, texts, endpoint):
    rng = random.Random(endpoint)
    chosen = rng.sample(texts[:-3], 60) + texts[-3:]
    single = {}
    for text in chosen:
        response = accurate_client.post(endpoint, json={"query": text, "variant": "accurate"})
        assert response.status_code == 200, response.json
        single[text] = response.json
    rng.shuffle(chosen)
    url = endpoint.rstrip("/") + "/batch"
    for start in range(0, len(chosen), 21):
        part = chosen[start:start + 21]
        response = accurate_client.post(url, json={"queries": part, "variant": "accurate"})
        assert response.status_code == 200, response.json
        for text, found in zip(part, response.json["results"], strict=True):
            assert found == single[text]  # the same JSON: the same floats


def test_concurrent_requests_on_a_real_server_get_identical_answers(live_server, texts):
    """8 clients at once on 2 gunicorn workers: every answer to a text is byte for byte the same."""
    chosen = texts[:40] + texts[-2:]

    def ask(text):
        response = requests.get(f"{live_server.url}/ratings", params={"query": text, "variant": "accurate"},
                                timeout=60)
        assert response.status_code == 200, response.text
        return text, response.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, chosen * 4))
    bodies: dict[str, set[bytes]] = {}
    for text, body in answers:
        bodies.setdefault(text, set()).add(body)
    assert all(len(found) == 1 for found in bodies.values()), [t for t, b in bodies.items() if len(b) > 1][:3]


# -- long texts -----------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["fast", "accurate"])
def test_the_second_half_of_a_long_review_decides_its_answer(accurate_client, variant):
    answers = {}
    for name, ending in (("praise", PRAISE), ("scorn", SCORN)):
        response = accurate_client.post("/", json={"query": " ".join(NEUTRAL + ending), "variant": variant})
        assert response.status_code == 200, response.json
        answers[name] = response.json
    assert answers["praise"]["prediction"] == "Positive"
    assert answers["scorn"]["prediction"] == "Negative"
    for body in answers.values():
        read = body["read"]
        assert read["windows"] > 1 and not read["truncated"]
        assert read["tokens"] == read["text_tokens"] > 300


def test_a_text_longer_than_the_windows_says_what_was_not_read(sqlite_url):
    client = make_app(sqlite_url, ACCURATE_MAX_WINDOWS=2).test_client()
    text = " ".join(NEUTRAL * 3)
    body = client.get("/", query_string={"query": text, "variant": "accurate"}).json
    assert body["read"]["windows"] == 2 and body["read"]["truncated"]
    assert 128 < body["read"]["tokens"] < body["read"]["text_tokens"]
    short = client.get("/", query_string={"query": "a fine film", "variant": "accurate"}).json
    assert short["read"] == {"tokens": 3, "text_tokens": 3, "windows": 1, "truncated": False}
    fast = client.get("/", query_string={"query": text}).json
    assert fast["read"]["windows"] == 60 and not fast["read"]["truncated"]


def test_windows_cover_every_word_piece_once_past_their_overlap(accurate_heads):
    from tokenizers import Tokenizer

    from sentiment_clf.serving.accurate import MAX_TOKENS, WINDOW_OVERLAP

    encoder = accurate_heads["sentiment"].encoder
    whole = Tokenizer.from_str(encoder.tokenizer.to_str())
    whole.no_truncation()
    for words in (1, 50, 125, 126, 127, 400, 1000):
        text = " ".join(f"w{i % 7}" for i in range(words))  # "w3" is two word pieces
        windows, pieces = encoder.windows(text)
        assert pieces == len(whole.encode(text, add_special_tokens=False).ids)
        assert all(len(ids) <= MAX_TOKENS and ids[0] == 101 and ids[-1] == 102 for ids in windows)
        assert sum(len(ids) - 2 for ids in windows) - WINDOW_OVERLAP * (len(windows) - 1) == pieces


@pytest.mark.parametrize(("text", "expected"), [
    ("that movie was boring", ["that movie was boring"]),
    ("Great. Really great!", ["Great.", "Really great!"]),
    ("Ms. Fulford is spooky. It works!", ["Ms. Fulford is spooky.", "It works!"]),
    ("J. K. Rowling wrote it. I loved it", ["J. K. Rowling wrote it.", "I loved it"]),
    ("It helps that Lil Bow Wow... tones it down", ["It helps that Lil Bow Wow... tones it down"]),
    ("one<br /><br />two<BR>three", ["one", "two", "three"]),
    ("a paragraph\n\nanother", ["a paragraph", "another"]),
    ("wrapped by\nhand", ["wrapped by\nhand"]),
    ("... Blade II is more enjoyable than the original .", ["... Blade II is more enjoyable than the original ."]),
])
def test_the_fast_tier_splits_sentences_where_a_reader_would(text, expected):
    from sentiment_clf.serving.documents import sentences

    assert sentences(text) == expected
