"""A head's partner (sentiment_clf/partners.py, training/partners.py) on a small corpus
fitted here: it answers as the scikit-learn regression it was fitted as, the blend is
the weighed sum it says, and dev chooses a weight only where the partner helps."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from sentiment_clf.serving.classifiers import log_softmax
from sentiment_clf.serving.formats import pack_arrays, unpack_arrays
from sentiment_clf.serving.partners import TextPartner
from sentiment_clf.serving.text import character_ngrams, tokenize_tweet, tokenize_tweet_characters
from sentiment_clf.training.partners import MIN_DF, WEIGHTS, choose_weight, fit_partner, log_probabilities

LABELS = ("rude", "kind", "neither")
WORDS = {0: ["idiot", "stupid", "trash", "loser", "moron"], 1: ["lovely", "thanks", "sweet", "great", "kind"],
         2: ["table", "train", "monday", "weather", "paper"]}


def corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts whose label shows in a word, spelled plainly or stretched (``stuuupid``)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], rng.integers(0, 3, n)
    for label in labels:
        words = list(rng.choice(WORDS[2], 3)) + [str(rng.choice(WORDS[int(label)]))]
        if rng.random() < 0.3:  # a stretched vowel: a word the word block never saw
            word = words[-1]
            vowel = next((i for i, c in enumerate(word) if c in "aeiou"), 0)
            words[-1] = word[:vowel] + word[vowel] * 3 + word[vowel + 1:]
        rng.shuffle(words)
        texts.append(" ".join(words) + (" @user http" if rng.random() < 0.2 else ""))
    return texts, labels


@pytest.fixture(scope="module")
def fitted():
    texts, labels = corpus(600, 0)
    return texts, labels, fit_partner(texts, labels, len(LABELS))


def test_character_ngrams_mark_where_a_word_starts_and_ends():
    assert character_ngrams(["ok"]) == ["▁o", "ok", "k▁", "▁ok", "ok▁", "▁ok▁"]
    assert character_ngrams(["a"], 2, 5) == ["▁a", "a▁", "▁a▁"]
    assert tokenize_tweet_characters("RT @bob: Hi") == character_ngrams(tokenize_tweet("RT @bob: Hi"))
    assert all(" " not in gram for gram in tokenize_tweet_characters("a b  c\td"))


def test_a_partner_answers_as_the_regression_it_was_fitted_as(fitted):
    """The stored arrays (float32), read by the service's numpy code, give what scikit-learn's
    two TF-IDF blocks and one logistic regression give, to float32 precision."""
    texts, labels, arrays = fitted
    blocks = [TfidfVectorizer(tokenizer=tokenize_tweet, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                              sublinear_tf=True, min_df=MIN_DF),
              TfidfVectorizer(tokenizer=tokenize_tweet_characters, lowercase=False, token_pattern=None,
                              sublinear_tf=True, min_df=MIN_DF)]
    features = hstack([block.fit_transform(texts) for block in blocks]).tocsr()
    regression = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(features, labels)
    unseen, _ = corpus(50, 1)
    unseen += ["", "nothing we know", "STUUUPID!!!"]
    expected = regression.predict_proba(hstack([block.transform(unseen) for block in blocks]).tocsr())
    partner = TextPartner(LABELS, unpack_arrays(pack_arrays(arrays)), 0.3, "sha")
    found = np.exp(log_probabilities(partner, unseen))
    np.testing.assert_allclose(found, expected, atol=1e-5)
    assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert all(arrays[name].dtype == np.float32 for name in arrays if not name.endswith(".vocabulary"))


def test_character_ngrams_read_spellings_the_words_never_saw(fitted):
    texts, labels, arrays = fitted
    partner = TextPartner(LABELS, arrays, 0.3, "sha")
    assert LABELS[int(partner.log_proba("monday paper stuuuuuupid").argmax())] == "rude"
    assert LABELS[int(partner.log_proba("monday paper thaaaanks").argmax())] == "kind"


def test_the_blend_weighs_the_two_log_probabilities(fitted):
    _, _, arrays = fitted
    partner = TextPartner(LABELS, arrays, 0.25, "sha")
    head = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    text = "a lovely train"
    blended = partner.blend(head, text)
    expected = 0.75 * log_softmax(head.astype(np.float64)) + 0.25 * partner.log_proba(text)
    np.testing.assert_allclose(blended, expected, rtol=0, atol=1e-12)
    assert blended.dtype == np.float64
    # A text's answer is the same alone and after any other (no state between texts).
    partner.log_proba("idiot " * 50)
    np.testing.assert_array_equal(partner.blend(head, text), blended)


@pytest.mark.parametrize("weight", [0.0, 1.0, -0.1, 1.5])
def test_a_weight_outside_zero_and_one_is_refused(fitted, weight):
    with pytest.raises(ValueError, match="between 0 and 1"):
        TextPartner(LABELS, fitted[2], weight, "sha")


def test_a_partner_without_its_arrays_is_refused(fitted):
    arrays = {name: value for name, value in fitted[2].items() if name != "chars.idf"}
    with pytest.raises(ValueError, match="no arrays chars.idf"):
        TextPartner(LABELS, arrays, 0.3, "sha")


def test_a_partner_of_two_labels_scores_both():
    """scikit-learn keeps one row of weights for two labels; the partner scores the first 0."""
    texts, labels = corpus(300, 5)
    keep = labels < 2
    texts, labels = [t for t, k in zip(texts, keep, strict=True) if k], labels[keep]
    arrays = fit_partner(texts, labels, 2)
    assert arrays["words.coef"].shape[0] == 2 and not arrays["words.coef"][0].any()
    partner = TextPartner(LABELS[:2], arrays, 0.3, "sha")
    assert int(partner.log_proba("a train idiot").argmax()) == 0
    assert int(partner.log_proba("a train lovely").argmax()) == 1


def test_a_partner_needs_every_label_to_learn_from():
    texts, labels = corpus(60, 2)
    with pytest.raises(ValueError, match="all 4 labels"):
        fit_partner(texts, labels, 4)


def test_dev_chooses_a_weight_where_the_partner_helps_and_none_where_it_does_not(fitted):
    """A head that cannot tell the stretched spellings apart (its scores ignore them) gains
    from the partner; a partner of noise is not chosen."""
    texts, labels, arrays = fitted
    partner = TextPartner(LABELS, arrays, 0.3, "sha")
    dev_texts, dev_truth = corpus(400, 3)
    rng = np.random.default_rng(4)
    # The head: sure and right on plainly spelled words, unsure (uniform) on stretched ones.
    plain = np.array([any(word in text.split() for word in WORDS[int(label)])
                      for text, label in zip(dev_texts, dev_truth, strict=True)])
    head = np.where(plain[:, None], 4.0 * np.eye(3)[dev_truth], rng.normal(0, 0.1, (len(dev_texts), 3)))
    weight, curve = choose_weight(head, log_probabilities(partner, dev_texts), dev_truth, accuracy_score)
    assert 0 < weight <= max(WEIGHTS)
    assert [row[0] for row in curve] == WEIGHTS and curve[0][1] < max(row[1] for row in curve)
    noise = log_softmax(rng.normal(0, 3, (len(dev_texts), 3)))
    right_head = 4.0 * np.eye(3)[dev_truth]
    assert choose_weight(right_head, noise, dev_truth, accuracy_score)[0] == 0.0
