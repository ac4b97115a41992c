"""The compact scorer gives the model's own probabilities, to 1e-9, on whole test splits."""
import numpy as np
import pytest

import build_model
import util
from conftest import MODELS_DIR, SHARED_DATA, need
from model import NLPModel
from sentiment_clf.scorer import PYTHON_LIMIT, Scorer
from sentiment_clf.training.recipes import RECIPES as MODELS


def split_texts(name, sst_dir):
    spec = MODELS[name]
    if spec.protocol == "sst":
        return util.load_sst(sst_dir / "test.txt", roots_only=True)["phrase"].tolist() + \
            util.load_sst(sst_dir / "dev.txt")["phrase"].tolist()[:3000]
    need((SHARED_DATA / spec.data_files[0]).is_file(), f"no {spec.data_files[0]} in {SHARED_DATA}")
    return build_model.base_data(spec, sst_dir, SHARED_DATA)[2]["text"].tolist()


# The scorer sums short texts in Python and long ones with numpy: each way must agree alone.
@pytest.mark.parametrize("python_limit", [PYTHON_LIMIT, 0, 10**9], ids=["default", "numpy-only", "python-only"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_scorer_equals_scikit_learn_on_the_test_split(name, python_limit, sst_dir):
    model = NLPModel.load(MODELS_DIR / name)
    texts = split_texts(name, sst_dir) + ["", "   ", "zzqx unknown words", "😀", "RT @x: &amp; http://t.co"]
    expected = model.predict_proba(texts)
    scorer = Scorer(model, python_limit)
    got = np.array([scorer.predict_proba(text) for text in texts])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert len(texts) > 1000


def test_short_texts_are_summed_in_python_and_long_ones_with_numpy():
    scorer = NLPModel.load(MODELS_DIR / "sentiment").scorer()
    short = "that movie was boring"
    long = ("a gorgeous , witty , seductive movie that nobody should miss , but everybody will see it "
            "and forget it by the end of the day because the plot is thin and the actors are tired")
    assert len(scorer.term_counts(short)) * 2 <= scorer.python_limit < len(scorer.term_counts(long)) * 2
    assert isinstance(scorer._scores(scorer.term_counts(short)), list)
    assert isinstance(scorer._scores(scorer.term_counts(long)), np.ndarray)


def test_the_scorer_follows_online_learning():
    model = NLPModel.load(MODELS_DIR / "sentiment")
    before = model.scorer().predict_proba("that movie was boring")
    model.partial_fit(["that movie was boring"] * 50, ["Positive"] * 50)
    after = model.scorer().predict_proba("that movie was boring")
    assert after[1] > before[1]
    np.testing.assert_allclose(after, model.predict_proba(["that movie was boring"])[0], rtol=0, atol=1e-12)
