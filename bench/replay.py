"""Benchmark: bounded replay. Cold start and worker memory with 100,000 stored answers.

    .venv/bin/python -m bench.replay                 # --answers 100000 --rounds 3

The service (tests/live_server.LiveServer: gunicorn with the README's command, 2
workers, its own SQLite database through SENTIMENT_CLF_DATA_DIR) is started on

* an empty database;
* a database holding ``--answers`` learned answers to the sentiment model
  (distinct SST phrases, non-neutral, with their labels; inserted in bulk with
  ``learned`` true) and the checkpoint a running service would have written
  (made here by a model registry that learned them all, as the first server did);
* the same answers without a checkpoint: every start replays them all (and writes
  the checkpoint; each round starts from a fresh copy without it).

Each round measures the cold start (process start until ``/health`` answers 200)
and, after warm-up requests of every kind in each worker (predictions with
explanations, a batch, feedback, pages), each worker's memory from ``/proc/<pid>/smaps_rollup``:
RSS and private (USS: Private_Clean + Private_Dirty). Medians over the rounds,
and each case's ratio to the empty database. Not a test: it prints figures for
BENCHMARKS.md and writes them as JSON to bench/results/replay.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import func, insert, select
from sqlalchemy import text as sql

from bench.bench_workers import WARM_UP, one_connection_per_worker
from bench.harness import LiveServer, machine, memory_kib, save_results, worker_pids
from sentiment_clf.config import Settings
from sentiment_clf.feedback import checkpoints as checkpoint_store
from sentiment_clf.feedback.admission import learn_key
from sentiment_clf.feedback.online import ModelRegistry
from sentiment_clf.feedback.schema import checkpoints, feedback
from sentiment_clf.feedback.store import Storage, default_url
from sentiment_clf.serving.loading import load_models
from sentiment_clf.tasks import MODELS
from sentiment_clf.training import datasets

ROOT = Path(__file__).resolve().parents[1]

CASES = ("empty database", "answers, with checkpoint", "answers, no checkpoint (full replay)")
DATABASE = "feedback.sqlite"


def sst_answers(data_dir: Path, count: int) -> list[tuple[str, str]]:
    """``count`` distinct SST phrases that are not neutral, labelled as the sentiment model labels."""
    phrases = []
    for split in ("train", "dev", "test"):
        frame = datasets.load_sst(data_dir / f"{split}.txt")
        phrases += [(p, "Negative" if label < 2 else "Positive")
                    for p, label in zip(frame["phrase"], frame["label"], strict=True) if label != 2]
    distinct = list({learn_key("sentiment", text, label): (text, label) for text, label in phrases}.values())
    if len(distinct) < count:
        raise SystemExit(f"only {len(distinct)} distinct non-neutral SST phrases; ask for fewer answers")
    return distinct[:count]


def fill(folder: Path, answers: list[tuple[str, str]], version: str) -> None:
    """A database in ``folder`` holding ``answers``, learned, inserted in bulk."""
    storage = Storage(default_url(folder))
    now = datetime.now(UTC)
    rows = [{"model": "sentiment", "text": text, "label": label, "prediction": label, "model_version": version,
             "request_key": None, "created_at": now, "client": f"ip:bench-{i % 997}", "learned": True,
             "learn_key": learn_key("sentiment", text, label)} for i, (text, label) in enumerate(answers)]
    with storage.engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(insert(feedback), rows[start:start + 10_000])
    close(storage)


def checkpoint(folder: Path) -> dict:
    """What the first server on this database does: learn every answer, write the checkpoint."""
    storage = Storage(default_url(folder))
    started = time.perf_counter()
    registry = ModelRegistry(load_models(Settings().model_dir, list(MODELS)), storage, sync_interval=3600,
                             checkpoint_every=Settings().checkpoint_every)
    replay_s = time.perf_counter() - started
    with storage.engine.connect() as conn:
        stored = conn.execute(select(func.count(), func.max(func.length(checkpoints.c.arrays)))).one()
    served = registry.get("sentiment")
    counts = served.model.counts
    assert counts is not None and counts.folded is not None
    base = registry.base_models["sentiment"]
    loads = []
    for _ in range(5):  # what a start adds: reading, checking and restoring the checkpoint
        begun = time.perf_counter()
        found = checkpoint_store.load_newest(storage, "sentiment", served.base_version, base)
        loads.append(time.perf_counter() - begun)
        assert found is not None and found.learned == served.learned
    close(storage)
    if not stored[0]:
        raise RuntimeError("no checkpoint was written")
    return {"checkpoints": stored[0], "checkpoint_bytes": stored[1], "in_process_full_replay_s": replay_s,
            "in_process_checkpoint_load_s": statistics.median(loads),
            "learned": served.learned, "learned_terms": len(counts.folded.terms),
            "version": served.version}


def close(storage: Storage) -> None:
    with storage.engine.connect() as conn:  # everything in the main file, none in the WAL
        conn.execute(sql("PRAGMA wal_checkpoint(TRUNCATE)"))
    storage.dispose()


def health(url: str, started: float, timeout: float = 120.0) -> tuple[float, dict]:
    """Seconds from ``started`` until ``/health`` answers 200, and its answer."""
    while time.perf_counter() - started < timeout:
        try:
            answer = requests.get(f"{url}/health", timeout=1)
            if answer.status_code == 200:
                return time.perf_counter() - started, answer.json()
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url}/health did not answer within {timeout} s")


def warm_up(server: LiveServer, rounds: int) -> list[int]:
    """Every kind of request, ``rounds`` times, in every worker (each on its own kept-alive
    connection: a gevent worker keeps a client's connection); returns the workers' pids."""
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(server.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the first worker can answer before the second is forked
    connections = one_connection_per_worker(server.port, pids)
    for i in range(rounds):
        for method, path, body in WARM_UP:
            if body and "query" in body:  # a new text each round
                body = {**body, "query": f"{body['query']} {i}"}
            for conn in connections.values():
                if method == "GET":
                    conn.request("GET", path + ("?" + urlencode(body) if body else ""))
                else:
                    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                answer = conn.getresponse()
                text = answer.read()
                if answer.status >= 500:
                    raise RuntimeError(f"{method} {path}: {answer.status} {text[:200]!r}")
    for conn in connections.values():
        conn.close()
    return pids


def one_start(template: Path, folder: Path, warm_rounds: int) -> dict:
    folder.mkdir()
    if (template / DATABASE).exists():
        shutil.copy(template / DATABASE, folder / DATABASE)
    env = {"SENTIMENT_CLF_DATA_DIR": str(folder), "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "100000 per minute",
           "SENTIMENT_CLF_ACCESS_LOG": "false"}
    started = time.perf_counter()
    server = LiveServer(folder / "server.log", workers=2, env=env)
    try:
        cold_start, answer = health(server.url, started)
        pids = warm_up(server, warm_rounds)
        time.sleep(1)
        memory = [memory_kib(pid) for pid in pids]
    finally:
        server.stop()
    return {"cold_start_s": cold_start, "sentiment_version": answer["models"]["sentiment"]["version"],
            "memory_kib": memory}


def paired(runs: list[dict], empty: list[dict]) -> float:
    """The median over rounds of (this case's cold start - the empty database's), each
    pair started one after the other: steadier than a ratio of medians on a busy machine."""
    return statistics.median(run["cold_start_s"] - other["cold_start_s"] for run, other in zip(runs, empty,
                                                                                                strict=True))


def summary(runs: list[dict]) -> dict:
    def per_worker(key):
        return statistics.median(statistics.mean(m[key] for m in run["memory_kib"]) for run in runs)

    return {"cold_start_s": statistics.median(run["cold_start_s"] for run in runs),
            "cold_start_min_s": min(run["cold_start_s"] for run in runs),
            "rss_kib": per_worker("rss"), "private_kib": per_worker("private"), "pss_kib": per_worker("pss")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=100_000, help="learned answers stored")
    parser.add_argument("--rounds", type=int, default=3, help="starts of each case (alternating)")
    parser.add_argument("--warm-up", type=int, default=20, help="rounds of warm-up requests before measuring")
    parser.add_argument("--sst", type=Path, default=ROOT.parent / "shared" / "data" / "sst")
    args = parser.parse_args(argv)
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                     "command": " ".join(["python -m bench.replay", *(argv or sys.argv[1:])]),
                     "answers": args.answers, "workers": 2}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        templates = {case: root / f"template-{i}" for i, case in enumerate(CASES)}
        for folder in templates.values():
            folder.mkdir()
        started = time.perf_counter()
        version = load_models(Settings().model_dir, ["sentiment"])["sentiment"].version
        fill(templates[CASES[2]], sst_answers(args.sst, args.answers), version)
        results["insert_s"] = time.perf_counter() - started
        shutil.copy(templates[CASES[2]] / DATABASE, templates[CASES[1]] / DATABASE)
        results["checkpoint"] = checkpoint(templates[CASES[1]])
        results["database_bytes"] = (templates[CASES[1]] / DATABASE).stat().st_size
        runs: dict[str, list[dict]] = {case: [] for case in CASES}
        for i in range(args.rounds):
            for case in CASES:
                runs[case].append(one_start(templates[case], root / f"run-{i}-{CASES.index(case)}", args.warm_up))
                print(f"round {i + 1} {case}: {runs[case][-1]['cold_start_s']:.2f} s, "
                      f"{runs[case][-1]['sentiment_version']}", flush=True)
    results["runs"] = runs
    results["summary"] = {case: summary(runs[case]) for case in CASES}
    empty = results["summary"][CASES[0]]
    for case in CASES[1:]:
        found = results["summary"][case]
        found["ratio_to_empty"] = {key: found[key] / empty[key]
                                   for key in ("cold_start_s", "cold_start_min_s", "rss_kib", "private_kib")}
        found["cold_start_paired_difference_s"] = paired(runs[case], runs[CASES[0]])
    made = results["checkpoint"]
    print(f"\n{args.answers:,} learned answers; checkpoint {made['checkpoint_bytes']:,} bytes "
          f"({made['learned_terms']:,} learned terms), loaded in {made['in_process_checkpoint_load_s'] * 1e3:.0f} ms "
          f"in-process (a full replay: {made['in_process_full_replay_s']:.1f} s); median of {args.rounds} starts, "
          "2 workers")
    print("| database | cold start s (fastest) | RSS MiB / worker | private MiB / worker "
          "| vs empty: start (fastest), RSS, private |")
    print("|---|---:|---:|---:|---|")
    for case in CASES:
        found = results["summary"][case]
        ratios = found.get("ratio_to_empty")
        label = case if case == CASES[0] else f"{args.answers:,} {case}"
        print(f"| {label} | {found['cold_start_s']:.2f} ({found['cold_start_min_s']:.2f}) | "
              f"{found['rss_kib'] / 1024:.1f} | {found['private_kib'] / 1024:.1f} | "
              + (f"{ratios['cold_start_s']:.2f}x ({ratios['cold_start_min_s']:.2f}x), {ratios['rss_kib']:.2f}x, "
                 f"{ratios['private_kib']:.2f}x" if ratios else "") + " |")
    for case in CASES[1:]:
        print(f"{case}: cold start minus the empty database's, median of the {args.rounds} pairs: "
              f"{results['summary'][case]['cold_start_paired_difference_s'] * 1e3:+.0f} ms")
    save_results("replay.json", results)
    print(f"machine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
