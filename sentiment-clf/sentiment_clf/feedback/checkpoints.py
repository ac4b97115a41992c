"""Checkpoints of what a model learned online, stored in the database.

A served naive Bayes model is its base plus every learned answer. Replaying all
of them at each start costs time and, while it runs, memory, so a worker that has
learned ``CHECKPOINT_EVERY`` answers since the last checkpoint stores its learned
state: the learned terms' added counts, the labels' added totals and the class
counts (:class:`~sentiment_clf.serving.classifiers.NaiveBayesCounts`), a few bytes a
learned term, and the base's smoothed totals by label (so a start need not read
every saved count to add them up). A starting worker loads the newest checkpoint of its model's base
version and replays only the learned answers after it.

A checkpoint is packed like a model (``model_files.pack_arrays``: numeric arrays
only, never pickled) with a manifest that holds the arrays' SHA-256. Its
position (feedback id covered, answers learned, last learned id) is in the
arrays too, so the checksum covers it. A checkpoint that is altered, damaged or
does not fit the model is logged and skipped: the next older one is tried, then
a full replay. It belongs to one base version: a published version (retrain)
starts without one, and a rollback finds its base's checkpoints again. The
newest :data:`KEEP` of each model and base version are kept.

Writers race harmlessly: the state after the same answers is the same, a
checkpoint is unique per (model, base version, feedback id), and a writer that
loses the insert ignores it.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import delete, desc, insert, select
from sqlalchemy.exc import IntegrityError

from sentiment_clf.feedback.schema import checkpoints
from sentiment_clf.feedback.store import Storage
from sentiment_clf.serving import formats as model_files
from sentiment_clf.serving.linear_model import LinearTextModel

logger = logging.getLogger(__name__)

KEEP = 2  # checkpoints kept per model and base version


@dataclass(frozen=True)
class Checkpoint:
    """A model restored from a checkpoint, and where in the feedback it stands."""

    model: LinearTextModel
    feedback_upto: int  # every learned answer with an id up to this one is in the model
    learned: int  # answers learned on top of the base
    last_learned_id: int


def base_identity(model: LinearTextModel) -> str | None:
    """What ties a checkpoint to its base: the base's arrays checksum (None for a model
    never saved, which has no identity and gets no checkpoints)."""
    found = model.manifest_.get("arrays_sha256")
    return str(found) if found else None


def dumps(name: str, base_version: str, model: LinearTextModel, *, feedback_upto: int, learned: int,
          last_learned_id: int) -> tuple[dict, bytes]:
    """The manifest and arrays bytes of ``model``'s learned state as of its last fold
    (:meth:`LinearTextModel.fold`), which ``feedback_upto``, ``learned`` and
    ``last_learned_id`` describe."""
    counts = model.counts
    if counts is None or counts.folded is None or counts.folded_totals is None:
        raise ValueError(f"{name}: nothing learned and folded to checkpoint")
    arrays = {"learned_terms": counts.folded.terms, "learned_counts": counts.folded.counts,
              "added_total": counts.folded_totals[0], "class_count": counts.folded_totals[1],
              "base_totals": counts.base_totals(),
              "position": np.array([feedback_upto, learned, last_learned_id], dtype=np.int64)}
    payload = model_files.pack_arrays(arrays)
    manifest = {**model_files.LEARNED_STATE.stamp(), "model": name,
                "base_version": base_version, "base_sha256": base_identity(model),
                "labels": list(model.labels), "feedback_upto": feedback_upto, "learned": learned,
                "last_learned_id": last_learned_id, "learned_terms": len(counts.folded.terms),
                "arrays_sha256": model_files.checksum(payload),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    return manifest, payload


def loads(manifest: dict, payload: bytes, base: LinearTextModel, *, source: str) -> Checkpoint:
    """``base`` with the learned state of a checkpoint; ModelFileError when the checkpoint
    is altered, damaged or not one of ``base``'s."""
    model_files.LEARNED_STATE.check(manifest, source)
    model_files.verify(payload, manifest.get("arrays_sha256"), source,
                       "an older checkpoint (or a replay from the start) is used instead")
    if base.counts is None or manifest.get("base_sha256") != base_identity(base) \
            or manifest.get("labels") != list(base.labels):
        raise model_files.ModelFileError(f"{source}: the checkpoint is not of this base model")
    try:
        arrays = model_files.unpack_arrays(payload)
        position = [int(value) for value in arrays["position"]]
        if position != [manifest.get(key) for key in ("feedback_upto", "learned", "last_learned_id")]:
            raise ValueError("its position does not match its manifest")
        counts = base.counts.with_folded(arrays["learned_terms"], arrays["learned_counts"],
                                          arrays["added_total"], arrays["class_count"], arrays["base_totals"])
    except (KeyError, ValueError, TypeError) as exc:
        raise model_files.ModelFileError(f"{source}: inconsistent checkpoint ({exc})") from None
    return Checkpoint(base.with_counts(counts), *position)


def save(storage: Storage, name: str, base_version: str, model: LinearTextModel, *, feedback_upto: int,
         learned: int, last_learned_id: int, keep: int = KEEP) -> bool:
    """Store a checkpoint and drop all but the newest ``keep`` of this model and base
    version. False when another writer stored the same one first."""
    manifest, payload = dumps(name, base_version, model, feedback_upto=feedback_upto, learned=learned,
                              last_learned_id=last_learned_id)
    try:
        storage.call(lambda conn: conn.execute(insert(checkpoints).values(
            model=name, base_version=base_version, feedback_upto=feedback_upto,
            manifest=json.dumps(manifest), arrays=payload, created_at=datetime.now(UTC))), write=True)
    except IntegrityError:
        return False
    mine = (checkpoints.c.model == name, checkpoints.c.base_version == base_version)
    newest = select(checkpoints.c.id).where(*mine).order_by(desc(checkpoints.c.feedback_upto)).limit(keep)
    storage.call(lambda conn: conn.execute(
        delete(checkpoints).where(*mine, checkpoints.c.id.not_in(newest.scalar_subquery()))), write=True)
    logger.info("checkpoint of %s (base %s): %d answers learned, feedback up to id %d, %d bytes",
                name, base_version, learned, feedback_upto, len(payload))
    return True


def _one_or_none(query, conn):
    return conn.execute(query).one_or_none()


def newest_learned(storage: Storage, name: str, base_version: str) -> int:
    """Answers learned in the newest checkpoint of this model and base version (0 if none);
    reads manifests only."""
    manifest = storage.call(lambda conn: conn.execute(select(checkpoints.c.manifest).where(
        checkpoints.c.model == name, checkpoints.c.base_version == base_version)
        .order_by(desc(checkpoints.c.feedback_upto)).limit(1)).scalar())
    try:
        return int(json.loads(manifest)["learned"]) if manifest else 0
    except (ValueError, KeyError, TypeError):
        return 0


def load_newest(storage: Storage, name: str, base_version: str, base: LinearTextModel,
                after: int = 0) -> Checkpoint | None:
    """The newest checkpoint of this model and base version that loads, covering feedback
    beyond ``after``; None when there is none (or none loads: each failure is logged)."""
    if base_identity(base) is None or base.counts is None:
        return None
    mine = (checkpoints.c.model == name, checkpoints.c.base_version == base_version,
            checkpoints.c.feedback_upto > after)
    found = storage.call(lambda conn: conn.execute(select(checkpoints.c.id, checkpoints.c.feedback_upto)
                                                   .where(*mine).order_by(desc(checkpoints.c.feedback_upto))).all())
    for row in found:
        source = f"{storage.url}: checkpoint {row.id} of {name} (base {base_version}, to id {row.feedback_upto})"
        query = select(checkpoints.c.manifest, checkpoints.c.arrays, checkpoints.c.feedback_upto).where(
            checkpoints.c.id == row.id)
        stored = storage.call(functools.partial(_one_or_none, query))
        if stored is None:  # dropped by a newer writer meanwhile
            continue
        try:
            manifest = json.loads(stored.manifest)
            if not isinstance(manifest, dict) or manifest.get("feedback_upto") != stored.feedback_upto:
                raise model_files.ModelFileError(f"{source}: its manifest does not match its row")
            return loads(manifest, bytes(stored.arrays), base, source=source)
        except (model_files.ModelFileError, ValueError) as exc:
            logger.error("skipping a checkpoint that cannot be used: %s", exc)
    return None
