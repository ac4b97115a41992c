"""Retraining the accurate tier's heads with the stored feedback; the encoder stays as built.

A head is refitted on the served (int8) encoder's vectors of its base texts plus the
stored answers for its model, learned online or held, each distinct one once, as far as
each client's learning budget lets it teach (training/steering.py). The fit
starts from the committed head and is pulled toward it (an L2 penalty on the
difference), by L-BFGS: answers move the head, a handful cannot throw away what
fine-tuning found. It is published to the database as ``accurate:<name>`` only if its
test accuracy is at most ``tolerance`` below the head serving now and no family of
untrusted answers turns a confident serving prediction around: the same gates,
versions and rollback as the fast models (training/retrain.py). Re-fine-tuning the
encoder itself is ``build_model.py finetune``.

Base texts: the SST training sentences (sentiment: the non-neutral ones), the
hate-speech and questions training parts of fine-tuning's splits (finetune/data.py). Needs no torch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import accuracy_score

from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.policy import LearningPolicy
from sentiment_clf.feedback.store import Storage
from sentiment_clf.serving.accurate import PUBLISHED_PREFIX, AccurateHead, head_version
from sentiment_clf.serving.formats import ACCURATE_HEAD, checksum, pack_arrays
from sentiment_clf.serving.text import for_encoder
from sentiment_clf.training.retrain import answers_to_learn
from sentiment_clf.training.steering import steered_families

logger = logging.getLogger(__name__)

PULL = 1e-3  # strength of the pull toward the committed head (per weight, squared)


def base_data(name: str, data_root: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """``(train texts, train label indices, test texts, test label indices)`` for head ``name``."""
    from sentiment_clf.training import finetune  # no torch: its data part is numpy and pandas

    if name in ("sentiment", "ratings"):
        frames = finetune.sst_frames(data_root)
        from sentiment_clf.training.sst import load_splits

        roots = load_splits(data_root / "sst", None).train_roots
        train = finetune.text_frame([finetune.sst_to_plain(p) for p in roots["phrase"]], ratings=roots["label"],
                                sentiment=np.where(roots["label"] < 2, 0, np.where(roots["label"] > 2, 1, -1)))
        test = frames["test"]
    else:
        frames = (finetune.hate_frames if name == "hatespeech" else finetune.question_frames)(data_root)
        train, test = frames["train"], frames["test"]
    train, test = train[train[name] != finetune.IGNORE], test[test[name] != finetune.IGNORE]
    return train["text"].tolist(), train[name].to_numpy(), test["text"].tolist(), test[name].to_numpy()


def fit_head(vectors: np.ndarray, targets: np.ndarray, weight: np.ndarray, bias: np.ndarray,
             pull: float = PULL) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on ``vectors``, from and pulled toward (weight, bias)."""
    n_labels, width = weight.shape
    start = np.concatenate([weight.ravel(), bias]).astype(np.float64)
    x, y = vectors.astype(np.float64), np.eye(n_labels)[targets]

    def loss(flat):
        w, b = flat[:-n_labels].reshape(n_labels, width), flat[-n_labels:]
        scores = x @ w.T + b
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        value = -np.mean(np.sum(y * np.log(p + 1e-12), axis=1)) + pull * np.sum((flat - start) ** 2)
        grad_scores = (p - y) / len(x)
        grad = np.concatenate([(grad_scores.T @ x).ravel(), grad_scores.sum(axis=0)]) + 2 * pull * (flat - start)
        return value, grad

    found = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 200})
    flat = found.x.astype(np.float32)
    return flat[:-n_labels].reshape(n_labels, width), flat[-n_labels:]


def retrain_head(base: AccurateHead, data, storage: Storage, tolerance: float,
                 policy: LearningPolicy | None = None) -> tuple[bool, dict]:
    """Refit ``base``'s head with base data + stored answers (each client's within its budget
    in ``policy``); publish if not worse than the head serving now by more than ``tolerance``
    (test accuracy) and not steered. Returns ``(published, summary)``."""
    train_texts, train_targets, test_texts, test_targets = data
    name = base.name
    registry = ModelRegistry({}, storage, sync_interval=0, accurate={name: base})
    serving = registry.accurate()[name]
    answers, account = answers_to_learn(storage.feedback_after(0, model=name), policy)
    texts = train_texts + [for_encoder(row.text) for row in answers]
    targets = np.concatenate([train_targets, [base.labels.index(row.label) for row in answers]]).astype(int)
    logger.info("accurate %s: refitting the head on %d texts + %d answers", name, len(train_texts), len(answers))
    vectors = base.encoder.embed(texts)
    weight, bias = fit_head(vectors, targets, base.weight, base.bias)
    version = head_version(base.encoder_sha, name, weight, bias, base.temperature, base.partner)
    candidate = AccurateHead(name, base.labels, weight, bias, base.encoder, base.manifest_, version,
                             base.temperature, base.encoder_sha, base.partner)
    test_vectors = base.encoder.embed(test_texts)
    candidate_accuracy, serving_accuracy = (
        float(accuracy_score(test_targets, head.proba(test_vectors, test_texts).argmax(axis=1)))
        for head in (candidate, serving))
    upto = max((row.id for row in answers), default=0)
    steered = steered_families(answers, base.labels, serving.predict_proba, candidate.predict_proba,
                               base.predict_proba)
    summary = {"model": name, "serving_version": serving.version, "serving_accuracy": serving_accuracy,
               "candidate_accuracy": candidate_accuracy, "feedback_learned": len(answers), "tolerance": tolerance,
               **account, "steered_families": steered}
    if candidate_accuracy < serving_accuracy - tolerance or steered:
        return False, summary
    payload = pack_arrays({"weight": weight, "bias": bias})
    manifest = {**ACCURATE_HEAD.stamp(), "model": name, "version": version, "labels": list(base.labels),
                "encoder_sha256": base.encoder_sha, "arrays_sha256": checksum(payload),
                "metrics": {"test_accuracy": candidate_accuracy, "serving_test_accuracy": serving_accuracy},
                "training_data": {"base_texts": len(train_texts), "feedback_learned": len(answers),
                                  "feedback_upto": upto, **account}}
    storage.publish(PUBLISHED_PREFIX + name, manifest, payload, feedback_upto=upto)
    summary["version"] = version
    return True, summary
