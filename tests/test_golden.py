"""No answer changes: every prediction endpoint against answers recorded before the refactor.

``golden/answers.json.gz`` holds, for 282 texts (SST test sentences, tweets and
questions named by their place in ../shared/data, and hand-written edge cases),
what ``GET <endpoint>?explain=1`` answered at git 6ed6b74. Probabilities must
agree to 1e-9; explanations list the same terms with the same weights (terms
whose weights tie may trade places).
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


@pytest.fixture(scope="module")
def golden() -> list[dict]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as handle:
        records = json.load(handle)["records"]
    need(all((SHARED_DATA / r["source"]).is_file() for r in records if "source" in r),
         f"the data sets are not in {SHARED_DATA} (set SENTIMENT_CLF_SHARED_DATA)")
    import util

    frames = {
        "sst/test.txt": util.load_sst(SHARED_DATA / "sst" / "test.txt", roots_only=True)["phrase"],
        "hatespeech/labeled_data.csv": util.load_hatespeech(SHARED_DATA / "hatespeech" / "labeled_data.csv")["text"],
        "questions/dataset.csv": util.load_questions(SHARED_DATA / "questions" / "dataset.csv")["text"]}
    for record in records:
        if "source" in record:
            record["text"] = frames[record["source"]].iloc[record["index"]]
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
    assert set(found) == set(expected) - ({"explanation"} if not explain else set())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_single_answers_are_unchanged(client, golden, endpoint):
    for record in golden:
        expected = record["answers"][endpoint]
        for explain in (False, True):
            params = {"query": record["text"], **({"explain": "1"} if explain else {})}
            response = client.get(endpoint, query_string=params)
            assert response.status_code == 200, (record["text"], response.json)
            assert_same_answer(response.json, expected, explain)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_batch_answers_are_unchanged(client, golden, endpoint):
    url = endpoint.rstrip("/") + "/batch"
    texts = [record["text"] for record in golden]
    for explain in (False, True):
        response = client.post(url, json={"queries": texts, "explain": explain})
        assert response.status_code == 200, response.json
        for found, record in zip(response.json["results"], golden, strict=True):
            assert_same_answer(found, record["answers"][endpoint], explain)
