"""NLPModel: TF-IDF features and a multinomial naive Bayes classifier for short texts.

The model knows nothing about HTTP. It is saved as plain arrays plus JSON, never
pickled, so loading a model file cannot run code:

``<directory>/model.npz``
    a zip of ``.npy`` arrays written with ``allow_pickle=False``: the vocabulary
    (UTF-8 terms joined by newlines), the IDF weights and the naive Bayes counts;
``<directory>/manifest.json``
    the SHA-256 of ``model.npz``, the label names, the settings, the training
    data's hash, the metrics, library versions and the creation time.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
import re
import unicodedata
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB

logger = logging.getLogger(__name__)

FORMAT = "sentiment-clf/nlp-model"
FORMAT_VERSION = 1
ARRAYS_FILE = "model.npz"
MANIFEST_FILE = "manifest.json"
TOKENIZER = "ptb-lower-v1"

# The treebank writes brackets and quotes as PTB escapes; users type the characters.
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{",
                "-RCB-": "}", "``": '"', "''": '"'}
_PTB_ESCAPE = re.compile("|".join(re.escape(k) for k in _PTB_ESCAPES))
_NEGATION = re.compile(r"(?<=\w)(n't)\b")
_CLITIC = re.compile(r"(?<=\w)('(?:s|re|ve|ll|d|m))\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-'.]\w+)*|\.\.\.|--|[^\w\s]")


class ModelFileError(ValueError):
    """A saved model is missing, altered or not in a format this code reads."""


def tokenize(text: str) -> list[str]:
    """Split raw text into lower-case tokens the way the treebank is tokenized.

    Users type ``isn't`` and ``it’s``; the treebank has ``is n't`` and ``it 's``.
    Both give ``["is", "n't"]`` and ``["it", "'s"]`` here, so training phrases and
    live queries meet in the same vocabulary.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _PTB_ESCAPE.sub(lambda m: _PTB_ESCAPES[m.group()], text)
    text = text.translate({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"'}).lower()
    text = _NEGATION.sub(r" \1", text)
    text = _CLITIC.sub(r" \1", text)
    return _TOKEN.findall(text)


_TOKENIZERS = {TOKENIZER: tokenize}


class NLPModel:
    """TF-IDF vectorizer + multinomial naive Bayes over a fixed, ordered label list.

    Parameters
    ----------
    labels : sequence of str
        Class names in the order they are reported (for example from negative
        to positive). ``predict_proba`` columns follow this order.
    ngram_range, sublinear_tf, min_df :
        Passed to :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    alpha, fit_prior, class_prior :
        Passed to :class:`~sklearn.naive_bayes.MultinomialNB`; ``class_prior`` is
        ``None`` or one probability per label, in ``labels`` order.

    Attributes (after ``fit`` or ``load``)
    ----------
    vectorizer_ : TfidfVectorizer
    classifier_ : MultinomialNB, its ``classes_`` are ``0 .. len(labels) - 1``
    manifest_ : dict, what ``save`` wrote or ``load`` read (empty after ``fit``)
    """

    def __init__(self, labels, *, ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                 alpha=0.1, fit_prior=False, class_prior=None):
        self.labels = list(labels)
        self.ngram_range = tuple(ngram_range)
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.alpha = alpha
        self.fit_prior = fit_prior
        self.class_prior = None if class_prior is None else [float(p) for p in class_prior]

    def get_params(self) -> dict:
        return {"ngram_range": list(self.ngram_range), "sublinear_tf": self.sublinear_tf,
                "min_df": self.min_df, "alpha": self.alpha, "fit_prior": self.fit_prior,
                "class_prior": self.class_prior, "tokenizer": TOKENIZER}

    def _new_vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                               ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf,
                               min_df=self.min_df, dtype=np.float64)

    def _new_classifier(self) -> MultinomialNB:
        return MultinomialNB(alpha=self.alpha, fit_prior=self.fit_prior, class_prior=self.class_prior)

    def fit(self, texts, y, sample_weight=None) -> "NLPModel":
        """Learn the vocabulary, IDF weights and class counts.

        ``texts`` is a sequence of strings, ``y`` the matching label names (each
        one of ``labels``). Returns ``self``.
        """
        y_index = self._label_indices(y)
        missing = sorted(set(range(len(self.labels))) - set(y_index.tolist()))
        if missing:
            raise ValueError(f"no training examples for {[self.labels[i] for i in missing]}")
        self.vectorizer_ = self._new_vectorizer()
        features = self.vectorizer_.fit_transform(texts)
        self.classifier_ = self._new_classifier()
        self.classifier_.fit(features, y_index, sample_weight=sample_weight)
        self.manifest_ = {}
        return self

    def fit_from_features(self, vectorizer: TfidfVectorizer, features, y) -> "NLPModel":
        """Fit only the classifier on features from an already fitted ``vectorizer``.

        Lets a settings search reuse one vectorizer for several smoothing values.
        """
        self.vectorizer_ = vectorizer
        self.classifier_ = self._new_classifier()
        self.classifier_.fit(features, self._label_indices(y))
        self.manifest_ = {}
        return self

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(labels))``, columns in ``labels`` order."""
        return self.classifier_.predict_proba(self.vectorizer_.transform(texts))

    def predict(self, texts) -> np.ndarray:
        """The most probable label name for each text."""
        return np.asarray(self.labels, dtype=object)[self.predict_proba(texts).argmax(axis=1)]

    @property
    def n_features_(self) -> int:
        return len(self.vectorizer_.vocabulary_)

    def _label_indices(self, y) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        try:
            return np.fromiter((index[label] for label in y), dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"unknown label {exc.args[0]!r}; expected one of {self.labels}") from None

    # -- saving and loading ---------------------------------------------------

    def partial_fit(self, texts, y, sample_weight=None) -> "NLPModel":
        """Learn more examples with the fitted vocabulary and IDF weights kept as they are.

        Multinomial naive Bayes learns by adding up counts, so this is exact: the
        result equals fitting the classifier once on all the examples' features.
        Words outside the vocabulary are ignored. Returns ``self``.
        """
        features = self.vectorizer_.transform(texts)
        self.classifier_.partial_fit(features, self._label_indices(y), sample_weight=sample_weight)
        return self

    def dumps(self, *, name: str, training_data: dict | None = None,
              metrics: dict | None = None) -> tuple[dict, bytes]:
        """The manifest and the bytes of the arrays file.

        The bytes are the same for the same fitted model, so their checksum (and
        the version derived from it) identifies the model.
        """
        payload = _arrays_to_zip(self._to_arrays())
        checksum = hashlib.sha256(payload).hexdigest()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": checksum[:12],
            "labels": self.labels,
            "params": self.get_params(),
            "n_features": self.n_features_,
            "arrays_file": ARRAYS_FILE,
            "arrays_sha256": checksum,
            "training_data": training_data or {},
            "metrics": metrics or {},
            "library_versions": library_versions(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return manifest, payload

    def save(self, directory, *, name: str, training_data: dict | None = None,
             metrics: dict | None = None) -> dict:
        """Write ``model.npz`` and ``manifest.json`` into ``directory``; return the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest, payload = self.dumps(name=name, training_data=training_data, metrics=metrics)
        (directory / ARRAYS_FILE).write_bytes(payload)
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.manifest_ = manifest
        logger.info("saved model %s version %s to %s (%d bytes)", name, manifest["version"],
                    directory, len(payload))
        return manifest

    @classmethod
    def load(cls, directory) -> "NLPModel":
        """Load a model written by :meth:`save`, checking its checksum first.

        Raises :class:`ModelFileError` with a clear message when a file is missing,
        the checksum does not match, or the content is inconsistent.
        """
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelFileError(f"{manifest_path}: no model manifest here") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{manifest_path}: not a valid JSON manifest ({exc})") from None
        if not isinstance(manifest, dict):
            raise ModelFileError(f"{manifest_path}: not a {FORMAT} manifest")
        arrays_path = directory / str(manifest.get("arrays_file", ARRAYS_FILE))
        if arrays_path.parent != directory:
            raise ModelFileError(f"{manifest_path}: arrays_file must be a file in the same folder")
        try:
            payload = arrays_path.read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f"{arrays_path}: the model's arrays file is missing") from None
        return cls.loads(manifest, payload, source=str(arrays_path))

    @classmethod
    def loads(cls, manifest: dict, payload: bytes, *, source: str = "model") -> "NLPModel":
        """Build a model from a manifest and arrays bytes (as :meth:`dumps` gives them).

        ``source`` names where they came from in error messages.
        """
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"{source}: not a {FORMAT} v{FORMAT_VERSION} model")
        checksum = hashlib.sha256(payload).hexdigest()
        if checksum != manifest.get("arrays_sha256"):
            raise ModelFileError(
                f"{source}: checksum mismatch, the file was altered or damaged "
                f"(expected sha256 {manifest.get('arrays_sha256')}, found {checksum}); "
                "rebuild it with build_model.py or restore it from version control")
        try:
            model = cls._from_arrays(manifest, _arrays_from_zip(payload))
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise ModelFileError(f"{source}: inconsistent model content ({exc})") from None
        model.manifest_ = manifest
        return model

    def _to_arrays(self) -> dict[str, np.ndarray]:
        terms = sorted(self.vectorizer_.vocabulary_, key=self.vectorizer_.vocabulary_.get)
        if any("\n" in term for term in terms):
            raise ValueError("a vocabulary term holds a newline; cannot save it")
        return {
            "vocabulary": np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8),
            "idf": self.vectorizer_.idf_,
            "feature_count": self.classifier_.feature_count_,
            "class_count": self.classifier_.class_count_,
        }

    @classmethod
    def _from_arrays(cls, manifest: dict, arrays: dict[str, np.ndarray]) -> "NLPModel":
        params = dict(manifest["params"])
        tokenizer = params.pop("tokenizer")
        if tokenizer not in _TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}")
        model = cls(manifest["labels"], **params)
        terms = arrays["vocabulary"].tobytes().decode("utf-8").split("\n")
        feature_count = arrays["feature_count"].astype(np.float64)
        class_count = arrays["class_count"].astype(np.float64)
        n_classes, n_features = len(model.labels), len(terms)
        if feature_count.shape != (n_classes, n_features) or class_count.shape != (n_classes,) \
                or arrays["idf"].shape != (n_features,):
            raise ValueError("array shapes do not match the labels and vocabulary")

        model.vectorizer_ = model._new_vectorizer()
        model.vectorizer_.vocabulary_ = {term: i for i, term in enumerate(terms)}
        model.vectorizer_.idf_ = arrays["idf"].astype(np.float64)

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
        model.classifier_ = classifier
        return model


def library_versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}


def _arrays_to_zip(arrays: dict[str, np.ndarray]) -> bytes:
    # Fixed timestamps and order: the same arrays always give the same bytes.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _arrays_from_zip(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
