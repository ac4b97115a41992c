"""No answer changes: every prediction endpoint against answers recorded before the refactor.

``golden/answers.json.gz`` holds, for 282 texts (SST test sentences, tweets and
questions named by their place in ../shared/data, and hand-written edge cases),
what ``GET <endpoint>?explain=1`` answered at git 6ed6b74. Probabilities must
agree to 1e-9; explanations list the same terms with the same weights (terms
whose weights tie may trade places).

When a model is rebuilt on purpose, its endpoint's answers are recorded again and
no other's (``recorded_with`` says which, and why)::

    .venv/bin/python tests/test_golden.py "issue #11: hatespeech, questions rebuilt" /hatespeech /questions

``/hatespeech`` and ``/questions`` were recorded again for issue #11 (the hate-speech
model learns clean text as "neither"; both question models hold out one split); ``/``
and ``/ratings`` when the SST-trained models began to read a text of several sentences
sentence by sentence (the 20 such texts changed, no other); all four when every fast model
got a temperature (its confidences changed, no label).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA, need

GOLDEN = Path(__file__).parent / "golden" / "answers.json.gz"
ENDPOINTS = ("/", "/ratings", "/hatespeech", "/questions")
TOLERANCE = 1e-9
TIER_KEYS = {"variant", "version", "read"}  # not recorded


def texts_of(records: list[dict]) -> list[str]:
    """Each record's text: its own, or the one at its place in ../shared/data."""
    import util

    frames = {
        "sst/test.txt": lambda: util.load_sst(SHARED_DATA / "sst" / "test.txt", roots_only=True)["phrase"],
        "hatespeech/labeled_data.csv":
            lambda: util.load_hatespeech(SHARED_DATA / "hatespeech" / "labeled_data.csv")["text"],
        "questions/dataset.csv": lambda: util.load_questions(SHARED_DATA / "questions" / "dataset.csv")["text"]}
    loaded = {source: load() for source, load in frames.items()}
    return [loaded[r["source"]].iloc[r["index"]] if "source" in r else r["text"] for r in records]


@pytest.fixture(scope="module")
def golden() -> list[dict]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as handle:
        records = json.load(handle)["records"]
    need(all((SHARED_DATA / r["source"]).is_file() for r in records if "source" in r),
         f"the data sets are not in {SHARED_DATA} (set SENTIMENT_CLF_TEST_DATA)")
    for record, text in zip(records, texts_of(records), strict=True):
        record["text"] = text
    return records


def assert_same_explanation(found: dict, expected: dict) -> None:
    assert found["versus"] == expected["versus"]
    assert found["margin"] == pytest.approx(expected["margin"], abs=TOLERANCE)
    assert found["bias"] == pytest.approx(expected["bias"], abs=TOLERANCE)
    for side in ("toward", "away"):
        got, want = found[side], expected[side]
        assert [t["weight"] for t in got] == pytest.approx([t["weight"] for t in want], abs=TOLERANCE)
        # Equal weights may come in another order, and at the cut-off of the list
        # another of the equals may be listed; every other term must be the same.
        last = abs(want[-1]["weight"]) if want else 0.0
        assert {t["term"] for t in got if abs(t["weight"]) > last + TOLERANCE} == \
            {t["term"] for t in want if abs(t["weight"]) > last + TOLERANCE}
        weights = {t["term"]: t["weight"] for t in want}
        for term in got:
            if term["term"] in weights:
                assert term["weight"] == pytest.approx(weights[term["term"]], abs=TOLERANCE)


def assert_same_answer(found: dict, expected: dict, explain: bool) -> None:
    assert found["prediction"] == expected["prediction"]
    assert list(found["probabilities"]) == list(expected["probabilities"])
    assert found["probabilities"] == pytest.approx(expected["probabilities"], abs=TOLERANCE)
    assert found["confidence"] == pytest.approx(expected["confidence"], abs=TOLERANCE)
    assert ("explanation" in found) == explain
    if explain:
        assert_same_explanation(found["explanation"], expected["explanation"])
    if "fine" in expected:
        assert_same_answer(found["fine"], expected["fine"], explain)
    # Answers also name the tier, the model's version and how much was read; none is recorded.
    assert found.get("variant", "fast") == "fast"
    assert set(found) - TIER_KEYS == set(expected) - ({"explanation"} if not explain else set())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_single_answers_are_unchanged(served_client, golden, endpoint):
    client = served_client
    for record in golden:
        expected = record["answers"][endpoint]
        for explain in (False, True):
            params = {"query": record["text"], **({"explain": "1"} if explain else {})}
            response = client.get(endpoint, query_string=params)
            assert response.status_code == 200, (record["text"], response.json)
            assert_same_answer(response.json, expected, explain)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_batch_answers_are_unchanged(served_client, golden, endpoint):
    client = served_client
    url = endpoint.rstrip("/") + "/batch"
    texts = [record["text"] for record in golden]
    for explain in (False, True):
        response = client.post(url, json={"queries": texts, "explain": explain})
        assert response.status_code == 200, response.json
        for found, record in zip(response.json["results"], golden, strict=True):
            assert_same_answer(found, record["answers"][endpoint], explain)


def record_again(why: str, endpoints: list[str]) -> None:
    """Record the answers of ``endpoints`` (of the committed models) again, keeping every
    other endpoint's, and add ``why`` to ``recorded_with``."""
    import tempfile

    from conftest import make_app

    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"not an endpoint here: {sorted(unknown)}; expected some of {ENDPOINTS}")
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as handle:
        stored = json.load(handle)
    with tempfile.TemporaryDirectory() as folder:
        client = make_app(f"sqlite:///{folder}/feedback.sqlite").test_client()
        for record, text in zip(stored["records"], texts_of(stored["records"]), strict=True):
            for endpoint in endpoints:
                response = client.get(endpoint, query_string={"query": text, "explain": "1"})
                assert response.status_code == 200, (text, response.json)
                record["answers"][endpoint] = _without_tier(response.json)
    stored["recorded_with"] += f"; {', '.join(endpoints)} recorded again ({why})"
    with open(GOLDEN, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(json.dumps(stored).encode("utf-8"))


def _without_tier(answer: dict) -> dict:
    """The answer without ``variant``, ``version`` and ``read`` (in the levels under it too)."""
    return {k: _without_tier(v) if k == "fine" else v for k, v in answer.items() if k not in TIER_KEYS}


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3:
        raise SystemExit(f"usage: {sys.argv[0]} WHY ENDPOINT... (endpoints: {' '.join(ENDPOINTS)})")
    record_again(sys.argv[1], sys.argv[2:])
