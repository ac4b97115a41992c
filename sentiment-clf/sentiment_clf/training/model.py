"""NLPModel: TF-IDF features and a linear classifier for short texts (training).

The classifier is multinomial naive Bayes (the default), logistic regression, or
a linear SVM with sigmoid-calibrated probabilities. ``NLPModel`` is the
scikit-learn estimator that ``build_model.py`` fits, compares and saves; the
service loads what it saved as a :class:`~sentiment_clf.serving.linear_model.LinearTextModel`,
which computes the same probabilities with numpy alone. The model knows nothing
about HTTP. It is saved as plain arrays plus a JSON manifest, never pickled, so
loading a model file cannot run code (format: ``sentiment_clf/serving/formats.py``).
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC

from sentiment_clf.serving import formats as model_files
from sentiment_clf.serving import vocabulary
from sentiment_clf.serving.classifiers import arrays_from_format1, temper
from sentiment_clf.serving.formats import ModelFileError  # noqa: F401 (part of this module's API)
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.serving.text import TOKENIZER, TOKENIZERS, clean_tweet, tokenize, tokenize_tweet  # noqa: F401

logger = logging.getLogger(__name__)

CLASSIFIERS = ("nb", "logreg", "svm")


class CalibratedLinear:
    """A linear classifier's scores turned into probabilities by per-class sigmoids.

    Holds what scikit-learn's ``CalibratedClassifierCV(LinearSVC(), method="sigmoid",
    ensemble=False)`` computes with, as plain arrays, and computes the same
    probabilities: the decision ``X @ coef_.T + intercept_`` per class, then
    ``expit(-(a * d + b))``, normalized over the classes (for two classes, one
    score for the second class and ``1 - p`` for the first).
    """

    def __init__(self, coef, intercept, calibration_a, calibration_b, n_classes: int):
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.calibration_a_ = np.asarray(calibration_a, dtype=np.float64)
        self.calibration_b_ = np.asarray(calibration_b, dtype=np.float64)
        self.classes_ = np.arange(n_classes)

    @classmethod
    def from_sklearn(cls, calibrated: CalibratedClassifierCV) -> CalibratedLinear:
        [fitted] = calibrated.calibrated_classifiers_  # ensemble=False: one model
        svm = fitted.estimator
        return cls(svm.coef_, svm.intercept_, [c.a_ for c in fitted.calibrators],
                   [c.b_ for c in fitted.calibrators], len(calibrated.classes_))

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return self.calibrate(self.decision_function(X))

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities from decision values, shape ``(n, 1)`` for two classes, else ``(n, classes)``."""
        calibrated = expit(-(scores * self.calibration_a_ + self.calibration_b_))
        if len(self.classes_) == 2:
            return np.column_stack([1.0 - calibrated[:, 0], calibrated[:, 0]])
        total = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / len(self.classes_))
        proba = np.divide(calibrated, total, out=uniform, where=total != 0)
        proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


class NLPModel(ClassifierMixin, BaseEstimator):
    """TF-IDF vectorizer + a linear classifier over a fixed, ordered label list.

    A scikit-learn estimator (``GridSearchCV`` can tune it): ``fit(texts, y)`` with
    ``y`` the label names, ``predict`` gives label names.

    Parameters
    ----------
    labels : sequence of str
        Class names in the order they are reported (for example from negative
        to positive). ``predict_proba`` columns follow this order.
    ngram_range, sublinear_tf, min_df :
        Passed to :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    tokenizer : ``"ptb-lower-v1"`` (movie reviews, questions) or ``"tweet-v1"``
        (:func:`clean_tweet` first).
    classifier : ``"nb"`` multinomial naive Bayes, ``"logreg"`` logistic regression,
        ``"svm"`` linear SVM with sigmoid-calibrated probabilities.
    alpha, fit_prior, class_prior :
        Naive Bayes smoothing and priors; ``class_prior`` is ``None`` or one
        probability per label, in ``labels`` order.
    C, class_weight :
        Logistic regression and SVM regularization, and ``"balanced"`` or ``None``.

    Attributes (after ``fit`` or ``load``)
    ----------
    vectorizer_ : TfidfVectorizer
    classifier_ : MultinomialNB, LogisticRegression or CalibratedLinear; its classes
        are ``0 .. len(labels) - 1``
    manifest_ : dict, what ``save`` wrote or ``load`` read (empty after ``fit``)
    temperature_ : float, divides the log-probabilities (1 after ``fit``; fitted by fast_calibration.py)
    """

    vectorizer_: TfidfVectorizer
    classifier_: Any  # its class depends on ``classifier``: code that uses it checks that first
    manifest_: dict
    _served: LinearTextModel | None  # served(), made once per fit

    def __init__(self, labels=(), *, ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                 tokenizer=TOKENIZER, classifier="nb", alpha=0.1, fit_prior=False,
                 class_prior=None, C=1.0, class_weight=None):
        self.labels = labels
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.tokenizer = tokenizer
        self.classifier = classifier
        self.alpha = alpha
        self.fit_prior = fit_prior
        self.class_prior = class_prior
        self.C = C
        self.class_weight = class_weight

    def settings(self) -> dict:
        """The parameters as JSON values (for the manifest), without the labels."""
        values = {"ngram_range": list(self.ngram_range), "sublinear_tf": self.sublinear_tf,
                  "min_df": self.min_df, "tokenizer": self.tokenizer, "classifier": self.classifier}
        if self.classifier == "nb":
            values.update(alpha=self.alpha, fit_prior=self.fit_prior,
                          class_prior=None if self.class_prior is None else [float(p) for p in self.class_prior])
        else:
            values.update(C=self.C, class_weight=self.class_weight)
        return values

    def _new_vectorizer(self) -> TfidfVectorizer:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}; expected one of {sorted(TOKENIZERS)}")
        return TfidfVectorizer(tokenizer=TOKENIZERS[self.tokenizer], lowercase=False, token_pattern=None,
                               ngram_range=tuple(self.ngram_range), sublinear_tf=self.sublinear_tf,
                               min_df=self.min_df, dtype=np.float64)

    def _new_classifier(self, smallest_class: int = 3):
        if self.classifier == "nb":
            prior = None if self.class_prior is None else [float(p) for p in self.class_prior]
            return MultinomialNB(alpha=self.alpha, fit_prior=self.fit_prior, class_prior=prior)
        if self.classifier == "logreg":
            return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=3000)
        if self.classifier == "svm":
            svm = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=0, max_iter=20000)
            # The sigmoids are fitted on held-out folds: as many as the rarest label allows.
            if smallest_class < 2:
                raise ValueError("a calibrated SVM needs at least 2 examples of every label")
            return CalibratedClassifierCV(svm, method="sigmoid", cv=min(3, smallest_class), ensemble=False)
        raise ValueError(f"unknown classifier {self.classifier!r}; expected one of {CLASSIFIERS}")

    def fit(self, texts, y, sample_weight=None) -> NLPModel:
        """Learn the vocabulary, IDF weights and the classifier.

        ``texts`` is a sequence of strings, ``y`` the matching label names (each
        one of ``labels``). Returns ``self``.
        """
        y_index = self._label_indices(y)
        missing = sorted(set(range(len(self.labels))) - set(y_index.tolist()))
        if missing:
            raise ValueError(f"no training examples for {[self.labels[i] for i in missing]}")
        self.vectorizer_ = self._new_vectorizer()
        return self._fit_classifier(self.vectorizer_.fit_transform(list(texts)), y_index, sample_weight)

    def fit_from_features(self, vectorizer: TfidfVectorizer, features, y) -> NLPModel:
        """Fit only the classifier on features from an already fitted ``vectorizer``.

        Lets a settings search reuse one vectorizer for several classifier settings.
        """
        self.vectorizer_ = vectorizer
        return self._fit_classifier(features, self._label_indices(y))

    def _fit_classifier(self, features, y_index, sample_weight=None) -> NLPModel:
        classifier = self._new_classifier(smallest_class=int(np.bincount(y_index).min()))
        classifier.fit(features, y_index, sample_weight=sample_weight)
        self.classifier_ = (CalibratedLinear.from_sklearn(classifier)
                            if isinstance(classifier, CalibratedClassifierCV) else classifier)
        self.classes_ = np.asarray(self.labels, dtype=object)
        self.manifest_ = {}
        self.temperature_ = 1.0
        self._served = None
        return self

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(labels))``, columns in ``labels`` order."""
        return temper(self.classifier_.predict_proba(self.vectorizer_.transform(texts)), self.temperature_)

    def predict(self, texts) -> np.ndarray:
        """The most probable label name for each text."""
        return np.asarray(self.labels, dtype=object)[self.predict_proba(texts).argmax(axis=1)]

    def partial_fit(self, texts, y, sample_weight=None) -> NLPModel:
        """Learn more examples with the fitted vocabulary and IDF weights kept as they are.

        Naive Bayes only: it learns by adding up counts, so this is exact (the
        result equals fitting the classifier once on all the examples' features).
        Words outside the vocabulary are ignored. Returns ``self``.
        """
        if not self.supports_partial_fit:
            raise NotImplementedError(f"a {self.classifier} model learns new examples only by retraining")
        features = self.vectorizer_.transform(texts)
        self.classifier_.partial_fit(features, self._label_indices(y), sample_weight=sample_weight)
        self._served = None  # its weights changed
        return self

    def served(self) -> LinearTextModel:
        """This model as the service runs it (numpy only, memory-mappable arrays)."""
        # Encoding the arrays and the vocabulary's table takes a while: once per fit.
        served = getattr(self, "_served", None)
        if served is None:
            manifest, payload = self.dumps(name=self.manifest_.get("name", "unsaved"))
            served = self._served = LinearTextModel.loads(manifest, payload)
        served.manifest_ = dict(self.manifest_)  # a model never saved has no version
        return served

    @property
    def supports_partial_fit(self) -> bool:
        return self.classifier == "nb"

    @property
    def n_features_(self) -> int:
        return len(self.vectorizer_.vocabulary_)

    def _label_indices(self, y) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        try:
            return np.fromiter((index[label] for label in y), dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"unknown label {exc.args[0]!r}; expected one of {list(self.labels)}") from None

    # -- explanations -----------------------------------------------------------

    def class_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with the model's per-class scores ``x @ W.T + b`` for features ``x``.

        The scores are what the classifier ranks classes by: naive Bayes' joint log
        likelihood, logistic regression's logits, the SVM's decision values. A
        binary logistic regression or SVM has one weight row, for the second
        label; the first label's score is then 0.
        """
        c = self.classifier_
        if self.classifier == "nb":
            return c.feature_log_prob_, c.class_log_prior_
        weights, intercept = np.asarray(c.coef_), np.asarray(c.intercept_)
        if weights.shape[0] == 1:
            return np.vstack([np.zeros_like(weights), weights]), np.concatenate([[0.0], intercept])
        return weights, intercept

    def explain(self, text: str, top: int = 10) -> dict:
        """Why ``text`` got its label rather than the runner-up: see
        :meth:`LinearTextModel.explain <sentiment_clf.serving.linear_model.LinearTextModel.explain>`."""
        return self.served().explain(text, top)

    # -- saving and loading ---------------------------------------------------

    def dumps(self, *, name: str, training_data: dict | None = None,
              metrics: dict | None = None) -> tuple[dict, bytes]:
        """The manifest and the bytes of the arrays file.

        The bytes are the same for the same fitted model, so their checksum (and
        the version derived from it) identifies the model.
        """
        terms = sorted(self.vectorizer_.vocabulary_, key=self.vectorizer_.vocabulary_.get)
        arrays = {**arrays_from_format1(self._classifier_arrays(), self.settings(), len(self.labels)),
                  **vocabulary.build_arrays(terms)}
        payload = model_files.pack_arrays(arrays)
        checksum = model_files.checksum(payload)
        manifest = {
            "format": model_files.FORMAT,
            "format_version": model_files.FORMAT_VERSION,
            "name": name,
            "version": checksum[:12],
            "labels": list(self.labels),
            "params": self.settings(),
            "n_features": len(terms),
            "arrays_file": model_files.ARRAYS_FILE,
            "arrays_sha256": checksum,
            "training_data": training_data or {},
            "metrics": metrics or {},
            "library_versions": model_files.library_versions("numpy", "scipy", "scikit-learn"),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return manifest, payload

    def save(self, directory, *, name: str, training_data: dict | None = None,
             metrics: dict | None = None) -> dict:
        """Write ``model.npz`` and ``manifest.json`` into ``directory``; return the manifest."""
        manifest, payload = self.dumps(name=name, training_data=training_data, metrics=metrics)
        model_files.write(Path(directory), manifest, payload)
        self.manifest_ = manifest
        logger.info("saved model %s version %s to %s (%d bytes)", name, manifest["version"],
                    directory, len(payload))
        return manifest

    @classmethod
    def load(cls, directory) -> NLPModel:
        """Load a model written by :meth:`save`, checking its checksum first.

        Raises :class:`ModelFileError` with a clear message when a file is missing,
        the checksum does not match, or the content is inconsistent.
        """
        manifest = model_files.read_manifest(Path(directory))
        return cls._build(manifest, model_files.map_arrays_file(Path(directory), manifest),
                          str(Path(directory) / model_files.ARRAYS_FILE))

    @classmethod
    def loads(cls, manifest: dict, payload: bytes, *, source: str = "model") -> NLPModel:
        """Build a model from a manifest and arrays bytes (as :meth:`dumps` gives them)."""
        model_files.check(manifest, payload, source)
        return cls._build(manifest, payload, source)

    @classmethod
    def _build(cls, manifest: dict, payload, source: str) -> NLPModel:
        try:
            arrays = {name: np.array(value) for name, value in model_files.unpack_arrays(payload).items()}
            model = cls._from_arrays(manifest, arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{source}: inconsistent model content ({exc})") from None
        model.manifest_ = manifest
        return model

    def _classifier_arrays(self) -> dict[str, np.ndarray]:
        """The fitted classifier's own arrays (the format 1 names), and the IDF weights."""
        c = self.classifier_
        arrays = {"idf": self.vectorizer_.idf_}
        if self.classifier == "nb":
            arrays.update(feature_count=c.feature_count_, class_count=c.class_count_)
        else:
            arrays.update(coef=c.coef_, intercept=c.intercept_)
        if self.classifier == "svm":
            arrays.update(calibration_a=c.calibration_a_, calibration_b=c.calibration_b_)
        if self.temperature_ != 1.0:  # a model never calibrated keeps its bytes and version
            arrays["temperature"] = np.array([self.temperature_], dtype=np.float64)
        return arrays

    @classmethod
    def _from_arrays(cls, manifest: dict, arrays: dict[str, np.ndarray]) -> NLPModel:
        params = dict(manifest["params"])
        if params.get("tokenizer") not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {params.get('tokenizer')!r}")
        if params.get("classifier", "nb") not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {params.get('classifier')!r}")
        params["ngram_range"] = tuple(params["ngram_range"])
        model = cls(list(manifest["labels"]), **params)
        n_classes = len(model.labels)
        model.temperature_ = float(arrays["temperature"][0]) if "temperature" in arrays else 1.0
        if "weights" in arrays:  # format 2: back to the classifier's own arrays
            arrays = _format1_arrays(arrays, model.classifier, n_classes)
        terms = arrays["vocabulary"].tobytes().decode("utf-8").split("\n")
        n_features = len(terms)
        if arrays["idf"].shape != (n_features,):
            raise ValueError("array shapes do not match the labels and vocabulary")
        model.vectorizer_ = model._new_vectorizer()
        model.vectorizer_.vocabulary_ = {term: i for i, term in enumerate(terms)}
        model.vectorizer_.idf_ = arrays["idf"].astype(np.float64)
        model.classifier_ = _CLASSIFIER_LOADERS[model.classifier](model, arrays, n_classes, n_features)
        model.classes_ = np.asarray(model.labels, dtype=object)
        return model


def _format1_arrays(arrays: dict[str, np.ndarray], classifier: str, n_classes: int) -> dict[str, np.ndarray]:
    """Format 2's served arrays back as the classifier's own (the inverse of
    :func:`~sentiment_clf.serving.classifiers.arrays_from_format1`)."""
    converted = {"vocabulary": arrays["vocabulary"], "idf": arrays["idf"]}
    if classifier == "nb":
        converted.update(feature_count=np.ascontiguousarray(arrays["feature_count_by_term"].T),
                         class_count=arrays["class_count"])
        return converted
    weights, bias = arrays["weights"], arrays["bias"]
    if n_classes == 2:  # the first label's column of zeros was added when saving
        weights, bias = weights[:, 1:], bias[1:]
    converted.update(coef=np.ascontiguousarray(weights.T), intercept=bias)
    if classifier == "svm":
        converted.update(calibration_a=arrays["calibration_a"], calibration_b=arrays["calibration_b"])
    return converted


def _load_nb(model: NLPModel, arrays, n_classes: int, n_features: int) -> MultinomialNB:
    feature_count = arrays["feature_count"].astype(np.float64)
    class_count = arrays["class_count"].astype(np.float64)
    if feature_count.shape != (n_classes, n_features) or class_count.shape != (n_classes,):
        raise ValueError("array shapes do not match the labels and vocabulary")
    classifier = model._new_classifier()
    classifier.classes_ = np.arange(n_classes)
    classifier.n_features_in_ = n_features
    classifier.feature_count_ = feature_count
    classifier.class_count_ = class_count
    # The same formulas MultinomialNB.fit applies to its counts.
    smoothed = feature_count + model.alpha
    classifier.feature_log_prob_ = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
    if model.class_prior is not None:
        if len(model.class_prior) != n_classes:
            raise ValueError("class_prior does not have one value per label")
        classifier.class_log_prior_ = np.log(np.asarray(model.class_prior))
    elif model.fit_prior:
        classifier.class_log_prior_ = np.log(class_count) - np.log(class_count.sum())
    else:
        classifier.class_log_prior_ = np.full(n_classes, -np.log(n_classes))
    return classifier


def _linear_arrays(arrays, n_classes: int, n_features: int):
    coef, intercept = arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64)
    rows = 1 if n_classes == 2 else n_classes
    if coef.shape != (rows, n_features) or intercept.shape != (rows,):
        raise ValueError("array shapes do not match the labels and vocabulary")
    return coef, intercept


def _load_logreg(model: NLPModel, arrays, n_classes: int, n_features: int) -> LogisticRegression:
    classifier = model._new_classifier()
    classifier.coef_, classifier.intercept_ = _linear_arrays(arrays, n_classes, n_features)
    classifier.classes_ = np.arange(n_classes)
    classifier.n_features_in_ = n_features
    return classifier


def _load_svm(model: NLPModel, arrays, n_classes: int, n_features: int) -> CalibratedLinear:
    coef, intercept = _linear_arrays(arrays, n_classes, n_features)
    a, b = arrays["calibration_a"].astype(np.float64), arrays["calibration_b"].astype(np.float64)
    if a.shape != intercept.shape or b.shape != intercept.shape:
        raise ValueError("array shapes do not match the labels and vocabulary")
    return CalibratedLinear(coef, intercept, a, b, n_classes)


_CLASSIFIER_LOADERS = {"nb": _load_nb, "logreg": _load_logreg, "svm": _load_svm}
