"""Scoring a file in bulk: each row's answer added to its columns, chunk by chunk.

    sentiment-clf predict reviews.csv --column text --model sentiment -o scored.parquet

CSV, JSON Lines, Parquet and plain text (one text a line, the column ``text``) in and
out, by the files' extensions. The input is read and scored a chunk at a time, so a
file of any length takes the memory of a few chunks; each scored chunk is written to
``OUTPUT.parts/`` as it is done, so a rerun after an interruption skips the chunks
already there, and the parts are joined into OUTPUT at the end. A row whose text is
missing, empty or over MAX_QUERY_CHARS characters is kept, with its reason in the
``error`` column and no answer; the summary counts them.

``engine="dask"`` scores the chunks on a Dask cluster (``scheduler``: its address; none:
a local cluster of two worker processes), each worker loading the models once; the
output is the same as the local engine's. Needs pandas (and pyarrow for Parquet; dask
and distributed for the Dask engine).
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from sentiment_clf.serving.classifier import Classifier
from sentiment_clf.tasks import MODELS

logger = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}
TEXT_COLUMN = "text"  # a plain-text file's one column
ANSWER_COLUMNS = ("prediction", "confidence", "version", "variant", "error")


class ScoringError(ValueError):
    """A job that cannot run as asked (a format, a column, another job's parts); the
    message says what to change."""


@dataclass(frozen=True)
class Job:
    """What to score: ``column`` of ``input`` by ``model`` on tier ``variant``, into ``output``."""

    input: Path
    output: Path
    column: str = TEXT_COLUMN
    model: str = "sentiment"
    variant: str = "fast"
    chunk_size: int = 10_000
    models_dir: Path | None = None  # the packaged models by default
    max_chars: int = 10_000

    @property
    def parts(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    def identity(self) -> dict:
        """What makes two runs the same job (a rerun may resume only the same one)."""
        stat = self.input.stat()
        return {**{k: str(v) for k, v in asdict(self).items()}, "input_bytes": stat.st_size,
                "input_mtime_ns": stat.st_mtime_ns}


@dataclass
class Summary:
    rows: int = 0
    scored: int = 0
    bad: Counter = field(default_factory=Counter)  # reason -> rows
    first_bad: list[int] = field(default_factory=list)  # the first bad rows' numbers (from 1)
    chunks: int = 0
    resumed: int = 0  # chunks found done by an earlier run
    seconds: float = 0.0

    def lines(self) -> list[str]:
        found = [f"{self.rows:,} rows, {self.scored:,} scored in {self.seconds:.1f} s "
                 f"({self.rows / max(self.seconds, 1e-9):,.0f} rows/s); {self.chunks} chunks"
                 + (f", {self.resumed} already done by an earlier run" if self.resumed else "")]
        if self.bad:
            found.append(f"{sum(self.bad.values()):,} rows not scored ("
                         + ", ".join(f"{reason}: {count:,}" for reason, count in sorted(self.bad.items()))
                         + f"); first rows: {', '.join(map(str, self.first_bad))}")
        return found


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ScoringError(f"{path}: the format is read from the extension, one of "
                           f"{', '.join(FORMATS)}") from None


def read_chunks(job: Job) -> Iterator[pd.DataFrame]:
    """The input, ``job.chunk_size`` rows at a time (a CSV's values as text, as written)."""
    kind = file_format(job.input)
    if kind == "csv":
        yield from pd.read_csv(job.input, chunksize=job.chunk_size, dtype=str, keep_default_na=False)
    elif kind == "jsonl":
        yield from pd.read_json(job.input, lines=True, chunksize=job.chunk_size, dtype=False)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(job.input).iter_batches(batch_size=job.chunk_size):
            yield batch.to_pandas()
    else:
        with job.input.open(encoding="utf-8") as lines:
            chunk: list[str] = []
            for line in lines:
                chunk.append(line.rstrip("\n"))
                if len(chunk) == job.chunk_size:
                    yield pd.DataFrame({TEXT_COLUMN: chunk})
                    chunk = []
            if chunk:
                yield pd.DataFrame({TEXT_COLUMN: chunk})


def count_rows(job: Job) -> int | None:
    """The input's rows, for the progress bar's ETA (a CSV's lines, less its header)."""
    kind = file_format(job.input)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(job.input).metadata.num_rows
    with job.input.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(functools.partial(handle.read, 1 << 20), b""))
    return max(0, lines - 1) if kind == "csv" else lines


@functools.lru_cache(maxsize=4)
def load_classifier(models_dir: str | None, accurate: bool) -> Classifier:
    """The models, loaded once per process (a Dask worker keeps them between its chunks)."""
    return Classifier.load(models_dir, accurate=accurate)


def why_bad(text: object, max_chars: int) -> str | None:
    if not isinstance(text, str):  # null in JSON or Parquet, NaN in a frame
        return "missing"
    if not text.strip():
        return "empty"
    if len(text) > max_chars:
        return "too long"
    return None


def score_chunk(frame: pd.DataFrame, column: str, model: str, variant: str, models_dir: str | None,
                max_chars: int) -> pd.DataFrame:
    """``frame`` with each row's answer in added columns: prediction, confidence, one
    ``p_<label>`` per label, the levels' predictions (``fine_prediction``), version, variant
    and error (empty, or why the row was not scored)."""
    reasons = [why_bad(text, max_chars) for text in frame[column]]
    labels = MODELS[model].labels
    added: dict[str, list] = {name: [None] * len(frame) for name in ("prediction", "confidence")}
    added.update({f"p_{label}": [None] * len(frame) for label in labels})
    added.update({f"{key}_prediction": [None] * len(frame) for key in MODELS[model].levels})
    added.update({"version": [None] * len(frame), "variant": [variant] * len(frame),
                  "error": [reason or "" for reason in reasons]})
    taken = [name for name in added if name in frame.columns]
    if taken:  # refused before any text is scored
        raise ScoringError(f"the input already has the column(s) {', '.join(taken)} that the answers add; "
                           "rename them")
    classifier = load_classifier(models_dir, variant == "accurate")
    good = [i for i, reason in enumerate(reasons) if reason is None]
    answers = classifier.predict([frame[column].iloc[i].strip() for i in good], model, variant)
    for i, answer in zip(good, answers, strict=True):
        added["prediction"][i], added["confidence"][i] = answer["prediction"], answer["confidence"]
        for label in labels:
            added[f"p_{label}"][i] = answer["probabilities"][label]
        for key in MODELS[model].levels:
            added[f"{key}_prediction"][i] = answer[key]["prediction"]
        added["version"][i] = answer["version"]
    return frame.reset_index(drop=True).assign(**{name: pd.Series(values, dtype=_dtype(name))
                                                  for name, values in added.items()})


def _dtype(name: str) -> str:
    return "float64" if name == "confidence" or name.startswith("p_") else "object"


def run(job: Job, engine: str = "local", scheduler: str | None = None, progress: bool = True) -> Summary:
    """Score ``job`` chunk by chunk (resuming an interrupted run of the same job) and write
    its output; the summary counts the rows, the bad ones and the time."""
    if job.model not in MODELS or MODELS[job.model].endpoint is None:
        raise ScoringError(f"no model {job.model!r}")
    output_kind = file_format(job.output)
    started = time.perf_counter()
    job.parts.mkdir(parents=True, exist_ok=True)
    marker = job.parts / "job.json"
    if marker.exists() and json.loads(marker.read_text()) != job.identity():
        raise ScoringError(f"{job.parts} holds the parts of another job (another input, model, tier or chunk "
                           "size); remove it, or write to another output")
    marker.write_text(json.dumps(job.identity()))
    summary = Summary()
    from tqdm import tqdm

    bar = tqdm(total=count_rows(job), unit="rows", disable=not progress, desc=job.input.name)
    try:
        for index, chunk_rows, scored in _scored_chunks(job, engine, scheduler, summary):
            if scored is not None:
                _write_part(scored, job.parts / f"part-{index:06d}.parquet")
            summary.chunks += 1
            bar.update(chunk_rows)
    finally:
        bar.close()
    _join_parts(job, output_kind, summary)
    shutil.rmtree(job.parts)
    summary.seconds = time.perf_counter() - started
    return summary


def _scored_chunks(job: Job, engine: str, scheduler: str | None, summary: Summary):
    """(index, rows, the scored chunk or None if an earlier run wrote it), in order."""
    args = (job.column, job.model, job.variant, None if job.models_dir is None else str(job.models_dir),
            job.max_chars)

    def todo() -> Iterator[tuple[int, pd.DataFrame | None, int]]:
        for index, frame in enumerate(read_chunks(job)):
            if job.column not in frame.columns:
                raise ScoringError(f"{job.input}: no column {job.column!r}; its columns are "
                                   f"{', '.join(map(str, frame.columns))}")
            done = (job.parts / f"part-{index:06d}.parquet").exists()
            if done:
                summary.resumed += 1
            yield index, None if done else frame, len(frame)

    if engine == "local":
        for index, frame, rows in todo():
            yield index, rows, None if frame is None else score_chunk(frame, *args)
        return
    if engine != "dask":
        raise ScoringError(f"no engine {engine!r}: local or dask")
    from distributed import Client, LocalCluster

    cluster = None if scheduler else LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        in_flight: list = []  # at most two chunks per worker: the memory stays bounded
        limit = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        for index, frame, rows in todo():
            future = None if frame is None else client.submit(score_chunk, frame, *args, pure=False)
            in_flight.append((index, rows, future))
            while len(in_flight) >= limit:
                first, count, pending = in_flight.pop(0)
                yield first, count, None if pending is None else pending.result()
        for first, count, pending in in_flight:
            yield first, count, None if pending is None else pending.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_part(frame: pd.DataFrame, path: Path) -> None:
    temporary = path.with_suffix(".partial")
    frame.to_parquet(temporary, index=False)
    temporary.replace(path)  # a part exists whole or not at all


def _join_parts(job: Job, kind: str, summary: Summary) -> None:
    """The parts, in order, written as OUTPUT (one part in memory at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    temporary = job.output.with_name(job.output.name + ".partial")
    writer = None
    row = 0
    with temporary.open("wb") as handle:
        for index, part in enumerate(sorted(job.parts.glob("part-*.parquet"))):
            table = pq.read_table(part)
            errors = table.column("error").to_pylist()
            summary.rows += len(errors)
            summary.scored += sum(1 for error in errors if not error)
            for offset, error in enumerate(errors):
                if error:
                    summary.bad[error] += 1
                    if len(summary.first_bad) < 10:
                        summary.first_bad.append(row + offset + 1)
            row += len(errors)
            if kind == "parquet":  # copied as it is, no frame made
                if writer is None:
                    writer = pq.ParquetWriter(handle, table.schema)
                writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
                continue
            frame = table.to_pandas()
            if kind == "csv":
                frame.to_csv(handle, index=False, header=index == 0)
            elif kind == "jsonl":
                if len(frame):
                    lines = frame.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n")
                    handle.write((lines + "\n").encode("utf-8"))
            else:  # one line a row: prediction, confidence, error and the text, tab-separated
                lines = [f"{p or ''}\t{'' if c is None or c != c else f'{c:.6f}'}\t{e}\t{t}\n"
                         for p, c, e, t in zip(frame["prediction"], frame["confidence"], frame["error"],
                                               frame[job.column], strict=True)]
                handle.write("".join(lines).encode("utf-8"))
        if writer is not None:
            writer.close()
        elif kind == "parquet":
            pq.write_table(pa.table({}), handle)
    temporary.replace(job.output)
