"""The four models: tweet cleaning, every classifier kind, explanations, selection, safe loading."""
import dataclasses
import json

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import LinearSVC

from model import CalibratedLinear, NLPModel, clean_tweet, tokenize_tweet
from sentiment_clf.training.holdout import build_holdout
from sentiment_clf.training.recipes import RECIPES as MODELS

from conftest import MODELS_DIR, SHARED_DATA, need

TEXTS = ["a great , moving film", "great fun", "wonderful acting", "I loved it", "a joy",
         "a boring , dull mess", "dull and tedious", "terrible acting", "I hated it", "a bore",
         "it was fine", "an ordinary film", "nothing special", "it exists", "so-so"]
THREE = ["good"] * 5 + ["bad"] * 5 + ["meh"] * 5
LABELS3 = ["bad", "meh", "good"]


@pytest.mark.parametrize("raw, clean", [
    ("RT @bob: I &lt;3 it http://t.co/x #fun", "I <3 it url fun"),
    ("!!! RT @mayasolovely: As a woman &amp; a man", "!!! As a woman & a man"),
    ("@a @b   hello\nthere www.example.com/x", "@user @user hello there url"),
    ("&amp;amp; twice escaped", "& twice escaped"),
    ("no markers at all", "no markers at all"),
    ("ARTIST said", "ARTIST said"),  # "RT" inside a word is not a retweet marker
])
def test_clean_tweet(raw, clean):
    assert clean_tweet(raw) == clean


def test_tweet_tokens():
    assert tokenize_tweet("RT @x: U can't be SERIOUS #wow") == ["u", "ca", "n't", "be", "serious", "wow"]


@pytest.mark.parametrize("labels, targets", [(["bad", "good"], THREE[:10]), (LABELS3, THREE)])
@pytest.mark.parametrize("classifier, params", [("nb", {"alpha": 0.5}), ("logreg", {"C": 10.0}),
                                                ("svm", {"C": 1.0})])
def test_every_classifier_saves_and_loads_exactly(tmp_path, labels, targets, classifier, params):
    model = NLPModel(labels, classifier=classifier, **params).fit(TEXTS[:len(targets)], targets)
    model.save(tmp_path, name="toy")
    loaded = NLPModel.load(tmp_path)
    probes = TEXTS + ["unseen", "great but dull"]
    np.testing.assert_array_equal(loaded.predict_proba(probes), model.predict_proba(probes))
    assert loaded.settings() == model.settings()
    np.testing.assert_allclose(model.predict_proba(probes).sum(axis=1), 1.0)


@pytest.mark.parametrize("labels, targets", [(["bad", "good"], THREE[:10]), (LABELS3, THREE)])
def test_the_svm_probabilities_are_scikit_learns(labels, targets):
    """The array form of a calibrated SVM computes what CalibratedClassifierCV computes."""
    model = NLPModel(labels, classifier="svm", C=1.0).fit(TEXTS[:len(targets)], targets)
    features = model.vectorizer_.transform(TEXTS[:len(targets)])
    reference = CalibratedClassifierCV(LinearSVC(C=1.0, random_state=0, max_iter=20000), method="sigmoid",
                                       cv=3, ensemble=False).fit(features, model._label_indices(targets))
    probes = model.vectorizer_.transform(TEXTS + ["great but dull"])
    ours = CalibratedLinear.from_sklearn(reference)
    np.testing.assert_allclose(ours.predict_proba(probes), reference.predict_proba(probes), rtol=0, atol=1e-15)
    # The model's own classifier is the same kind of fit (to solver precision: its
    # features come from fit_transform, laid out a little differently in memory).
    np.testing.assert_allclose(model.classifier_.predict_proba(probes), reference.predict_proba(probes),
                               rtol=0, atol=1e-8)


def test_partial_fit_is_for_naive_bayes_only():
    model = NLPModel(LABELS3, classifier="logreg").fit(TEXTS, THREE)
    assert not model.supports_partial_fit
    with pytest.raises(NotImplementedError, match="only by retraining"):
        model.partial_fit(["x"], ["good"])


@pytest.mark.parametrize("classifier", ["nb", "logreg", "svm"])
@pytest.mark.parametrize("labels, targets", [(["bad", "good"], THREE[:10]), (LABELS3, THREE)])
def test_explanations_add_up_to_the_margin_exactly(classifier, labels, targets):
    model = NLPModel(labels, classifier=classifier, ngram_range=(1, 2)).fit(TEXTS[:len(targets)], targets)
    for text in ["a great , moving film", "dull and tedious acting", "great but dull"]:
        why = model.explain(text, top=1000)
        weights, bias = model.class_scores()
        scores = np.asarray(model.vectorizer_.transform([text]) @ weights.T).ravel() + bias
        proba = model.predict_proba([text])[0]
        predicted, runner_up = np.argsort(-proba, kind="stable")[:2]
        assert why["versus"] == model.labels[runner_up] != model.predict([text])[0]
        assert why["margin"] == pytest.approx(scores[predicted] - scores[runner_up], abs=1e-12)
        total = why["bias"] + sum(t["weight"] for t in why["toward"] + why["away"])
        assert total == pytest.approx(why["margin"], abs=1e-9)
        assert all(t["weight"] > 0 for t in why["toward"]) and all(t["weight"] < 0 for t in why["away"])


def test_an_explanation_names_the_ngrams_that_matter():
    model = NLPModel(["bad", "good"], ngram_range=(1, 2), alpha=0.5).fit(TEXTS[:10], THREE[:10])
    why = model.explain("a boring , dull mess", top=3)
    assert why["versus"] == "good"
    assert {"dull", "boring", "dull mess", "mess", "boring ,"} & {t["term"] for t in why["toward"]}
    assert len(why["toward"]) <= 3


@pytest.fixture(scope="module")
def data_root():
    need((SHARED_DATA / "hatespeech" / "labeled_data.csv").is_file(), f"no data sets in {SHARED_DATA}")
    return SHARED_DATA


# One or two candidates of each classifier: the mechanics of choosing, in seconds.
FEW_CANDIDATES = [{"classifier": ["nb"], "alpha": [0.3], "fit_prior": [True, False]},
                  {"classifier": ["logreg"], "C": [1.0]},
                  {"classifier": ["svm"], "C": [1.0], "class_weight": [None, "balanced"]}]


@pytest.mark.parametrize("name", ["hatespeech", "questions"])
def test_selection_on_a_small_slice_picks_a_model_and_reports(data_root, tmp_path, name):
    spec = dataclasses.replace(MODELS[name], candidates=FEW_CANDIDATES)
    manifest = build_holdout(spec, data_root, tmp_path, progress=False, sample=600, n_jobs=1)
    assert manifest["params"]["classifier"] in ("nb", "logreg", "svm")
    report = tmp_path / name / "report"
    rows = (report / "selection.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 + 1 + 2  # header + every candidate
    assert rows[0] == f"C,alpha,class_weight,classifier,fit_prior,cv_{spec.metric}_mean,cv_{spec.metric}_std"
    assert (report / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["test_texts"] == 120 and metrics["train_texts"] == 480
    assert set(metrics["per_class"]) >= set(spec.labels)
    # Saved with the safe loader, it predicts what it predicted right after training.
    loaded = NLPModel.load(tmp_path / name)
    assert loaded.labels == list(spec.labels)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_models_saved_form_predicts_as_right_after_training(data_root, sst_dir, tmp_path, name):
    spec = MODELS[name]
    committed = NLPModel.load(MODELS_DIR / name)
    if spec.protocol == "sst":
        import util

        frame = spec.relabel(util.load_sst(sst_dir / "dev.txt")).rename(columns={"phrase": "text"})
    else:
        frame = spec.load(data_root)
    keep = 3000 if len(frame) > 6000 else len(frame)  # questions: all, so every label has examples
    texts, targets = frame["text"].tolist()[:keep], frame["target"].tolist()[:keep]
    present = [label for label in spec.labels if label in set(targets)]
    model = NLPModel(present, **committed.settings()).fit(texts, targets)
    model.save(tmp_path, name=name)
    loaded = NLPModel.load(tmp_path)
    probes = texts[:200] + ["that movie was boring", "where is the eiffel tower ?", "@x u r a joke lol"]
    np.testing.assert_array_equal(loaded.predict_proba(probes), model.predict_proba(probes))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_committed_models_load_and_answer(name):
    model = NLPModel.load(MODELS_DIR / name)
    assert model.manifest_["name"] == name and model.labels == list(MODELS[name].labels)
    proba = model.predict_proba(["what is the capital of peru ?", "that movie was boring"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_new_classifier_needs_only_a_description_and_a_loader(tmp_path):
    from sentiment_clf.tasks import ModelSpec
    from sentiment_clf.training.recipes import LINEAR_CANDIDATES, Recipe

    spam = [f"win money now offer {i}" for i in range(30)] + [f"free prize click here {i}" for i in range(30)]
    ham = [f"see you at lunch {i}" for i in range(30)] + [f"the meeting moved to friday {i}" for i in range(30)]
    (tmp_path / "spam").mkdir()
    import pandas as pd

    pd.DataFrame({"text": spam + ham, "label": ["spam"] * 60 + ["ham"] * 60}).to_csv(tmp_path / "spam" / "spam.csv")
    spec = Recipe(ModelSpec("spam", "/spam", ("spam", "ham")), protocol="holdout",
                     load=lambda root: pd.read_csv(root / "spam" / "spam.csv").assign(target=lambda f: f["label"]),
                     data_files=("spam/spam.csv",), candidates=LINEAR_CANDIDATES, metric="f1_macro", cv_folds=3)
    manifest = build_holdout(spec, tmp_path, tmp_path / "models", progress=False, n_jobs=1)
    assert manifest["metrics"]["test_accuracy"] == 1.0
    model = NLPModel.load(tmp_path / "models" / "spam")
    assert model.predict(["claim your free prize", "lunch on friday"]).tolist() == ["spam", "ham"]
