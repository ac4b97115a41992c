"""Ordinary text is not hate speech: the committed fast hate-speech model flags at most 3%
of clean text it was not trained on (issue #11), and the augment hook that taught it
this leaves the held-out tweets as they were."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from model import NLPModel
from sentiment_clf.tasks import ModelSpec
from sentiment_clf.training import holdout, ordinary
from sentiment_clf.training.recipes import RECIPES, Recipe

from conftest import MODELS_DIR, SHARED_DATA, need

MOST_FLAGGED = 0.03
SENTENCES = Path(__file__).parent / "data" / "ordinary_sentences.txt"


@pytest.fixture(scope="module")
def hatespeech() -> NLPModel:
    return NLPModel.load(MODELS_DIR / "hatespeech")


def test_the_sentences_file_is_what_the_build_measures():
    assert ordinary.ORDINARY_SENTENCES == SENTENCES
    sentences = ordinary.read_lines(SENTENCES)
    assert len(sentences) >= 150 and len(set(sentences)) == len(sentences)


def test_few_ordinary_sentences_are_flagged(hatespeech):
    rates = ordinary.flag_rate(hatespeech.predict, {"ordinary": ordinary.read_lines(SENTENCES)})
    assert rates["ordinary"]["rate"] <= MOST_FLAGGED, rates


def test_few_sst_test_sentences_are_flagged(hatespeech, sst_dir):
    rates = ordinary.flag_rate(hatespeech.predict, {"sst test": ordinary.sst_sentences(sst_dir / "test.txt")})
    assert rates["sst test"]["texts"] == 2210
    assert rates["sst test"]["rate"] <= MOST_FLAGGED, rates


def test_the_committed_report_records_the_rates(hatespeech):
    recorded = hatespeech.manifest_["metrics"]["ordinary_text_flagged"]
    assert set(recorded) == {"sst_dev_test_sentences", "trec_held_out_questions", "ordinary_sentences"}
    assert all(figures["rate"] <= MOST_FLAGGED for figures in recorded.values()), recorded


@pytest.mark.parametrize("text", ["This is a really fantastic Thai restaurant which is definitely worth a visit.",
                                  "you are a wonderful person, thank you"])
def test_the_issues_examples_are_neither(client, text):
    response = client.get("/hatespeech", query_string={"query": text})
    assert response.status_code == 200
    assert response.json["prediction"] == "neither", response.json


def test_tweets_are_still_flagged(served_client):
    client = served_client
    texts = ["RT @user: these hoes aint loyal", "@user you a bitch ass nigga"]
    answers = client.post("/hatespeech/batch", json={"queries": texts}).json["results"]
    assert answers[0]["prediction"] == "offensive language"  # the README's example
    assert all(a["prediction"] in ordinary.FLAGGED for a in answers)


def test_the_committed_model_holds_out_todays_tweets(hatespeech):
    metrics = hatespeech.manifest_["metrics"]
    assert metrics["test_texts"] == 4957 and metrics["train_texts"] == 19826
    assert {k: v["support"] for k, v in metrics["per_class"].items() if k in RECIPES["hatespeech"].labels} == \
        {"hate speech": 286, "offensive language": 3838, "neither": 833}


# The augment hook.

def _spam_recipe(**changes) -> Recipe:
    def load(root):
        return pd.read_csv(root / "spam.csv").assign(target=lambda f: f["label"])

    spec = Recipe(ModelSpec("spam", "/spam", ("spam", "ham")), protocol="holdout", load=load,
                  candidates=[{"classifier": ["logreg"], "C": [1.0, 10.0]}], metric="f1_macro", cv_folds=3)
    return dataclasses.replace(spec, **changes)


def _added(root) -> pd.DataFrame:
    texts = [f"the weather is mild today {i}" for i in range(20)] + [f"what time is lunch {i}" for i in range(20)]
    return pd.DataFrame({"text": texts, "target": "ham", "source": ["weather"] * 20 + ["lunch"] * 20})


@pytest.fixture()
def spam_root(tmp_path) -> Path:
    spam = [f"win money now offer {i}" for i in range(30)] + [f"free prize click here {i}" for i in range(30)]
    ham = [f"see you at lunch {i}" for i in range(30)] + [f"the meeting moved to friday {i}" for i in range(30)]
    pd.DataFrame({"text": spam + ham, "label": ["spam"] * 60 + ["ham"] * 60}).to_csv(tmp_path / "spam.csv")
    return tmp_path


def _build(spec: Recipe, root: Path, monkeypatch) -> tuple[dict, pd.DataFrame, list]:
    """Build ``spec``; returns its manifest, the frame it was tested on and what it was fitted on."""
    seen, fitted = {}, []
    evaluate, fit = holdout.reports.evaluate, NLPModel.fit

    def recording_evaluate(task, model, test, report_dir):
        seen["test"] = test
        return evaluate(task, model, test, report_dir)

    def recording_fit(self, texts, y, sample_weight=None):
        fitted.append((list(texts), sample_weight))
        return fit(self, texts, y, sample_weight)

    monkeypatch.setattr(holdout.reports, "evaluate", recording_evaluate)
    monkeypatch.setattr(NLPModel, "fit", recording_fit)
    manifest = holdout.build_holdout(spec, root, root / "models", progress=False, n_jobs=1)
    return manifest, seen["test"], fitted


def test_augmenting_leaves_the_held_out_split_as_it_was(spam_root, monkeypatch):
    plain, plain_test, _ = _build(_spam_recipe(), spam_root, monkeypatch)
    spec = _spam_recipe(augment=_added, augment_weight=0.5, augment_max_error=0.5)
    grown, grown_test, fitted = _build(spec, spam_root, monkeypatch)
    pd.testing.assert_frame_equal(grown_test, plain_test)
    assert grown["metrics"]["test_texts"] == plain["metrics"]["test_texts"] == 24
    assert grown["metrics"]["train_texts"] == plain["metrics"]["train_texts"] == 96
    assert grown["metrics"]["added_texts"] == 40 and grown["training_data"]["added_texts"] == 40
    assert grown["metrics"]["added_by_source"] == {"lunch": 20, "weather": 20}
    assert set(grown["metrics"]["unseen_source_error"]) == {"lunch", "weather"}
    # The final model learned the added rows, with their weight; none of the held-out ones.
    texts, weights = fitted[-1]
    assert set(_added(None)["text"]) <= set(texts) and not set(plain_test["text"]) & set(texts)
    assert weights is not None and sorted(set(weights)) == [0.5, 1.0] and (weights == 0.5).sum() == 40
    assert (spam_root / "models" / "spam" / "report" / "unseen_sources.csv").is_file()


def test_cross_validation_scores_only_the_datas_own_rows():
    spec = _spam_recipe()
    targets = ["spam"] * 30 + ["ham"] * 60
    plain, grown = holdout.cv_splits(spec, targets), holdout.cv_splits(spec, targets, n_added=7)
    assert len(grown) == spec.cv_folds
    added = set(range(90, 97))
    for (fit, scored), (plain_fit, plain_scored) in zip(grown, plain, strict=True):
        assert scored.tolist() == plain_scored.tolist() and max(scored) < 90  # the same folds, own rows only
        assert added <= set(fit.tolist()) and set(fit.tolist()) - added == set(plain_fit.tolist())
    assert sorted(i for _, scored in grown for i in scored) == list(range(90))


def test_augment_labels_must_be_the_models(spam_root):
    spec = _spam_recipe(augment=lambda root: pd.DataFrame({"text": ["x"], "target": ["eggs"]}))
    with pytest.raises(ValueError, match="eggs"):
        spec.augment_frame(spam_root)


def test_the_hate_speech_recipe_adds_clean_text_only_to_the_choosing_part():
    need((SHARED_DATA / "hatespeech" / "labeled_data.csv").is_file(), f"no data sets in {SHARED_DATA}")
    spec = RECIPES["hatespeech"]
    added = spec.augment_frame(SHARED_DATA)
    assert set(added["target"]) == {"neither"}
    assert added["source"].value_counts().to_dict() == {"sst_train_sentences": 8544, "trec_choosing_questions": 4361}
    # Nothing added is measured as ordinary text.
    measured = ordinary.ordinary_texts(SHARED_DATA, sentences=None)
    assert not set(added["text"]) & {t for texts in measured.values() for t in texts}
    # The held-out tweets are those of the recipe without augmentation.
    frame = spec.load_frame(SHARED_DATA)
    held_out = holdout.holdout_split(spec, frame)[1]
    assert held_out.index.equals(holdout.holdout_split(dataclasses.replace(spec, augment=None), frame)[1].index)
    assert len(held_out) == 4957
