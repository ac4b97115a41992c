"""A calibrated linear SVM as plain arrays: what training keeps of scikit-learn's
``CalibratedClassifierCV(LinearSVC(), method="sigmoid", ensemble=False)``."""
from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV


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
