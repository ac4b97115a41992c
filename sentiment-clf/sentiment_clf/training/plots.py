"""The evaluation plots of a model's report, saved as PNG: a ROC curve, a confusion matrix, a
reliability diagram, precision and recall by threshold."""
from __future__ import annotations

import matplotlib

# A non-interactive backend: plots go to files, also on machines with no screen.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
from sklearn.metrics import RocCurveDisplay, confusion_matrix  # noqa: E402


def save_roc_curve(y_true, scores, path, *, title: str, positive: str = "positive") -> None:
    """Save a ROC curve as PNG.

    ``y_true`` holds 1 for the positive class (named ``positive`` on the axes) and
    0 otherwise; ``scores`` is the predicted probability of the positive class.
    """
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    names = [positive if y else "other" for y in y_true]
    RocCurveDisplay.from_predictions(names, scores, pos_label=positive, ax=ax, name="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_title(title)
    ax.legend(loc="lower right")
    _save(fig, path)


def save_confusion_matrix(y_true, y_pred, labels, path, *, title: str) -> None:
    """Save a row-normalised confusion matrix (counts in brackets) as PNG.

    ``y_true`` and ``y_pred`` are label indices into ``labels`` (the names on the axes).
    """
    counts = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    share = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{share[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def save_reliability(before: list[dict], after: list[dict], path, *, title: str) -> None:
    """Save a reliability diagram: per confidence bin, the share right against the mean
    confidence, before and after calibration (``temperature.reliability`` rows)."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    for rows, name, style in ((before, "before", "o:"), (after, "after (temperature)", "s-")):
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], style, label=name)
    ax.set_xlabel("confidence (mean of the bin)")
    ax.set_ylabel("share right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left")
    _save(fig, path)


def save_precision_recall(curve: dict, path, *, title: str) -> None:
    """Save precision and recall of a label by decision threshold, on dev and held out
    (the operating points of ``finetune/release_model.py``, rows under ``"dev"`` and ``"held_out"``)."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for part, style in (("dev", ":"), ("held_out", "-")):
        rows = curve[part]
        thresholds = [r["threshold"] for r in rows]
        ax.plot(thresholds, [r["precision"] for r in rows], "b" + style, label=f"precision ({part})")
        ax.plot(thresholds, [r["recall"] for r in rows], "r" + style, label=f"recall ({part})")
    ax.set_xlabel(f"threshold on P({curve['label']})")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
