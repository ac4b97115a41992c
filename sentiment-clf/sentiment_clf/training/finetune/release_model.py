"""The served accurate model from fine-tuned encoders: combined, calibrated, measured as served.

``build_model.py finetune`` fine-tunes one encoder on the data sets it is given and
writes a complete model folder. :func:`release` takes one or more such folders, each
with the heads its encoder was trained for, and writes the folder the service loads:

- every encoder under its own name (``encoder-<part>.onnx``), the tokenizer they share,
  and the chosen heads in one ``heads.npz``;
- for the heads given a partner (``partners``), a TF-IDF logistic regression over words
  and character n-grams fitted on the texts the head's encoder learned from, blended
  into the head with the weight its dev texts choose (training/partners.py; none when
  they choose 0);
- each head's temperature (training/temperature.py), fitted on that head's dev texts
  (after the blend), so its confidence means what it says, with the expected
  calibration error before and after on the held-out texts and a reliability diagram
  each;
- every figure measured as the service answers (each text alone, long texts in
  windows), on the held-out texts, with a bootstrap 95% interval; the hate class's
  precision and recall at every threshold, on dev (for choosing) and held out (for
  reporting), for the moderation setting (``SENTIMENT_CLF_THRESHOLDS``);
- the weights all the encoders hold alike (the frozen word embeddings) once, in
  ``shared.npz`` (training/shared_weights.py);
- the manifest, with the SHA-256 of every file and each head's encoder.

Needs no torch: the encoders are read with onnxruntime (and rewritten with onnx).
"""
from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, f1_score, precision_recall_fscore_support

from sentiment_clf.serving import accurate
from sentiment_clf.serving.classifiers import softmax
from sentiment_clf.serving.formats import ACCURATE_MODEL, file_checksum, pack_arrays, unpack_arrays
from sentiment_clf.serving.partners import TextPartner
from sentiment_clf.tasks import HATE_LABELS
from sentiment_clf.training import ordinary
from sentiment_clf.training.finetune.data import (
    HEADS,
    IGNORE,
    SOURCE_HEADS,
    dev_score,
    hate_frames,
    question_frames,
    sample_rows,
    sst_frames,
)
from sentiment_clf.training.finetune.export import ordinary_texts
from sentiment_clf.training.finetune.network import BASE_WEIGHTS
from sentiment_clf.training.intervals import bootstrap_interval
from sentiment_clf.training.operating_points import curve
from sentiment_clf.training.partners import SETTINGS as PARTNER_SETTINGS
from sentiment_clf.training.partners import choose_weight, fit_partner, log_probabilities
from sentiment_clf.training.shared_weights import inlined, share
from sentiment_clf.training.temperature import expected_calibration_error, fit_temperature, reliability

logger = logging.getLogger(__name__)

HEAD_SOURCE = {head: source for source, heads in SOURCE_HEADS.items() for head in heads}


def _vectors(encoder: accurate.Encoder, texts: list[str]) -> np.ndarray:
    return encoder.embed(texts) if texts else np.zeros((0, 384), dtype=np.float32)


def head_figures(name: str, truth: np.ndarray, probabilities: np.ndarray) -> dict:
    """Held-out figures of one head, each with a bootstrap 95% interval."""
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(HEADS[name])))
    figures = {
        "test_accuracy": float(accuracy_score(truth, predicted)),
        "test_accuracy_interval": bootstrap_interval(
            lambda i: float((predicted[i] == truth[i]).mean()), len(truth)),
        "test_macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "test_macro_f1_interval": bootstrap_interval(
            lambda i: float(f1_score(truth[i], predicted[i], labels=labels, average="macro", zero_division=0)),
            len(truth), resamples=500),
        "test_texts": int(len(truth)),
        "test_ece": expected_calibration_error(probabilities, truth),
        "per_class": classification_report(truth, predicted, labels=labels, target_names=list(HEADS[name]),
                                           output_dict=True, zero_division=0),
    }
    if name == "hatespeech":
        hate = HATE_LABELS.index("hate speech")
        precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=[hate], zero_division=0)
        figures["hate_class"] = {"precision": float(precision[0]), "recall": float(recall[0]), "f1": float(f1[0]),
                                 "f1_interval": bootstrap_interval(
                                     lambda i: float(f1_score(truth[i], predicted[i], labels=[hate],
                                                              average="macro", zero_division=0)),
                                     len(truth), resamples=500)}
    return figures


def _frames(data_root: Path, sample: int | None = None) -> dict:
    frames = {"sst": sst_frames(data_root), "hate": hate_frames(data_root), "questions": question_frames(data_root)}
    if sample:  # quick runs (tests): a few dev and test texts of each, ten times as many to train a partner
        for source in frames.values():
            for part in ("dev", "test"):
                source[part] = sample_rows(source[part], sample, 0)
            source["train"] = sample_rows(source["train"], 10 * sample, 0)
    return frames


def _scores(head: accurate.AccurateHead, vectors: np.ndarray, texts: list[str]) -> np.ndarray:
    """The head's scores before the temperature, exactly as served (rows x labels)."""
    return np.concatenate(head.scores(vectors, texts)) if texts else np.zeros((0, len(head.labels)))


def _partner(head: accurate.AccurateHead, train, dev_scores: np.ndarray, dev_texts: list[str],
             dev_truth: np.ndarray, target: Path) -> tuple[TextPartner | None, dict]:
    """Fit ``head``'s partner on ``train`` (the rows that label it), choose its weight on dev;
    write it to ``target`` unless dev chooses 0. Returns it (or None) and its manifest entry."""
    train = train[train[head.name] != IGNORE]
    arrays = fit_partner(train["text"].tolist(), train[head.name].to_numpy(), len(head.labels))
    payload = pack_arrays(arrays)
    unweighted = TextPartner(head.labels, unpack_arrays(payload), 0.5, "")  # log_proba ignores the weight
    weight, dev_curve = choose_weight(dev_scores, log_probabilities(unweighted, dev_texts), dev_truth,
                                      lambda truth, predicted: dev_score(head.name, truth, predicted))
    entry = {"weight": weight, **PARTNER_SETTINGS, "trained_on": f"{len(train):,} training texts",
             "weight_chosen_on": f"{len(dev_texts):,} dev texts", "dev_curve": dev_curve}
    logger.info("accurate %s: partner weight %.2f chosen on dev (curve %s)", head.name, weight, dev_curve)
    if weight == 0.0:
        return None, entry
    file = accurate.PARTNER_FILE.format(head.name)
    (target / file).write_bytes(payload)
    return TextPartner(head.labels, unpack_arrays(payload), weight, file_checksum(target / file)), \
        {"file": file, **entry}


def release(parts: dict[str, tuple[Path, list[str]]], data_root: Path, target: Path, threads: int = 2,
            sample: int | None = None, partners: tuple[str, ...] = ()) -> dict:
    """Write the served model to ``target`` from ``parts``: ``{part: (fine-tuned model folder,
    [heads its encoder serves])}``; every head in exactly one part. ``partners``: the heads
    offered a partner (dev chooses its weight). ``sample``: only so many dev and test texts
    of each data set (quick runs). Returns the manifest."""
    chosen = [head for _, heads in parts.values() for head in heads]
    if sorted(chosen) != sorted(HEADS):
        raise ValueError(f"every head in exactly one part: got {chosen}, expected {list(HEADS)}")
    if set(partners) - set(HEADS):
        raise ValueError(f"a partner for a head there is not: {sorted(set(partners) - set(HEADS))}")
    target.mkdir(parents=True, exist_ok=True)
    report_dir = target / "report"
    report_dir.mkdir(exist_ok=True)
    frames = _frames(data_root, sample)
    tokenizer_json = None
    arrays: dict[str, np.ndarray] = {}
    encoders: dict[str, list[str]] = {}
    sources: dict[str, dict] = {}
    calibration: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    flagged: dict = {}
    partner_entries: dict[str, dict] = {}
    for stale in target.glob(accurate.PARTNER_FILE.format("*")):
        stale.unlink()
    for part, (folder, heads) in parts.items():
        manifest = json.loads((folder / accurate.MANIFEST_FILE).read_text(encoding="utf-8"))
        part_tokenizer = (folder / accurate.TOKENIZER_FILE).read_text(encoding="utf-8")
        if tokenizer_json not in (None, part_tokenizer):
            raise ValueError(f"{folder}: a tokenizer other than the other parts'")
        tokenizer_json = part_tokenizer
        file = f"encoder-{part}.onnx"
        # The part's encoder: finetune's encoder.onnx, or a released model's that serves these heads.
        source_file = next(f for f, served in accurate.encoder_files(manifest).items() if heads[0] in served)
        if manifest.get("shared"):  # a released model's encoder: its shared weights back inside
            (target / file).write_bytes(inlined(folder, source_file).SerializeToString())
        else:
            shutil.copyfile(folder / source_file, target / file)
        encoders[file] = [head for head in HEADS if head in heads]
        part_arrays = unpack_arrays((folder / accurate.HEADS_FILE).read_bytes())
        encoder = accurate.Encoder((target / file).read_bytes(), tokenizer_json, threads=threads)
        if "encoders" in manifest:  # a released model's part: its provenance as that release recorded it
            recorded: dict = next((p for p in (manifest.get("parts") or {}).values()
                                   if heads[0] in p.get("heads", [])), {})
            sources[part] = {**recorded, "heads": encoders[file]}
        else:
            sources[part] = {"heads": encoders[file], "trained_on": manifest.get("settings", {}).get("sources"),
                             "settings": manifest.get("settings"), "training_data": manifest.get("training_data"),
                             "build_seconds": manifest.get("build_seconds"), "versions": manifest.get("versions")}
        vectors: dict[tuple[str, str], np.ndarray] = {}
        for head in encoders[file]:
            source = HEAD_SOURCE[head]
            for split in ("dev", "test"):
                if (source, split) not in vectors:
                    logger.info("accurate %s: reading the %s %s texts", part, source, split)
                    vectors[source, split] = _vectors(encoder, frames[source][split]["text"].tolist())
            weight = np.asarray(part_arrays[f"{head}.weight"], dtype=np.float32)
            bias = np.asarray(part_arrays[f"{head}.bias"], dtype=np.float32)
            served = accurate.AccurateHead(head, HEADS[head], weight, bias, encoder, {}, "", 1.0, "")
            split_vectors, split_texts, truths = {}, {}, {}
            for split in ("dev", "test"):
                frame = frames[source][split]
                keep = frame[head].to_numpy() != IGNORE
                split_vectors[split], truths[split] = vectors[source, split][keep], frame[head].to_numpy()[keep]
                split_texts[split] = frame["text"][keep].tolist()
            if head in partners:
                served.partner, partner_entries[head] = _partner(
                    served, frames[source]["train"], _scores(served, split_vectors["dev"], split_texts["dev"]),
                    split_texts["dev"], truths["dev"], target)
            split_scores = {split: _scores(served, split_vectors[split], split_texts[split])
                            for split in ("dev", "test")}
            temperature = fit_temperature(split_scores["dev"], truths["dev"])
            served.temperature = temperature
            before = softmax(split_scores["test"].copy())
            after = served.proba(split_vectors["test"], split_texts["test"])
            arrays[f"{head}.weight"], arrays[f"{head}.bias"] = weight, bias
            arrays[f"{head}.temperature"] = np.array([temperature], dtype=np.float64)
            calibration[head] = {
                "temperature": temperature, "fitted_on": f"{len(truths['dev'])} dev texts",
                "test_ece_before": expected_calibration_error(before, truths["test"]),
                "test_ece": expected_calibration_error(after, truths["test"]),
                "dev_ece": expected_calibration_error(softmax(split_scores["dev"] / temperature),
                                                      truths["dev"]),
                "reliability": reliability(after, truths["test"]),
                "reliability_before": reliability(before, truths["test"])}
            metrics[head] = head_figures(head, truths["test"], after)
            if head == "hatespeech":
                hate = HATE_LABELS.index("hate speech")
                dev_p = served.proba(split_vectors["dev"], split_texts["dev"])[:, hate]
                curves[head] = curve("hate speech", truths["dev"], dev_p, truths["test"], after[:, hate], hate)
                flagged = ordinary.flag_rate(_labeller(served), ordinary_texts(frames))
            logger.info("accurate %s: T=%.3f, held-out ECE %.4f -> %.4f, accuracy %.4f", head, temperature,
                        calibration[head]["test_ece_before"], calibration[head]["test_ece"],
                        metrics[head]["test_accuracy"])
        # finetune's report, or the part's own in a released model's report
        part_report = folder / "report" / part if "encoders" in manifest else folder / "report"
        if part_report.is_dir() and part_report.resolve() != (report_dir / part).resolve():
            shutil.copytree(part_report, report_dir / part, dirs_exist_ok=True)
    assert tokenizer_json is not None
    (target / accurate.TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
    (target / accurate.HEADS_FILE).write_bytes(pack_arrays({k: arrays[k] for k in sorted(arrays)}))
    _plots(calibration, curves, report_dir)
    (target / accurate.SHARED_FILE).unlink(missing_ok=True)
    shared = share(target, list(encoders))  # measured above with whole encoders: the same weights
    adopted = {head: entry for head, entry in partner_entries.items() if "file" in entry}
    files = [*encoders, accurate.TOKENIZER_FILE, accurate.HEADS_FILE, *([accurate.SHARED_FILE] if shared else []),
             *(entry["file"] for entry in adopted.values())]
    manifest = {
        **ACCURATE_MODEL.stamp(), "name": "accurate",
        "heads": {name: list(labels) for name, labels in HEADS.items()},
        "encoders": encoders,
        **({"shared": accurate.SHARED_FILE, "shared_weights": shared} if shared else {}),
        **({"partners": adopted} if adopted else {}),
        "sha256": {name: file_checksum(target / name) for name in files},
        "base_weights": BASE_WEIGHTS, "max_tokens": accurate.MAX_TOKENS,
        "window_overlap": accurate.WINDOW_OVERLAP,
        "quantization": "int8 dynamic, per channel; each text run alone",
        "evaluation": "as served (each text alone, long texts in windows), on SST's test sentences and the "
                      "held-out tweets and questions; 95% intervals by the bootstrap",
        "metrics": {name: {k: v for k, v in m.items() if k != "per_class"} for name, m in metrics.items()},
        "calibration": {name: {k: v for k, v in c.items() if not k.startswith("reliability")}
                        for name, c in calibration.items()},
        "operating_points": curves,
        "ordinary_text_flagged": {k: v["rate"] for k, v in flagged.items()},
        **({"partners_declined": {h: e for h, e in partner_entries.items() if h not in adopted}}
           if len(adopted) < len(partner_entries) else {}),
        "parts": sources,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (target / accurate.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (report_dir / "metrics.json").write_text(json.dumps({"heads": metrics, "calibration": calibration,
                                                         "operating_points": curves,
                                                         "ordinary_text_flagged": flagged}, indent=2) + "\n",
                                             encoding="utf-8")
    return manifest


def _labeller(head: accurate.AccurateHead):
    """``texts -> labels`` through the head as served."""
    def labels(texts: list[str]) -> list[str]:
        return [head.labels[i] for i in head.proba(_vectors(head.encoder, texts), texts).argmax(axis=1)]

    return labels


def _plots(calibration: dict, curves: dict, report_dir: Path) -> None:
    from sentiment_clf.training.plots import save_precision_recall, save_reliability

    for name, found in calibration.items():
        save_reliability(found["reliability_before"], found["reliability"], report_dir / f"{name}_reliability.png",
                         title=f"accurate {name}: held-out reliability (T={found['temperature']:.2f})")
    for name, found_curve in curves.items():
        save_precision_recall(found_curve, report_dir / f"{name}_precision_recall.png",
                              title=f"accurate {name}: '{found_curve['label']}' by threshold")
