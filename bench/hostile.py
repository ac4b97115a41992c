"""Hostile loads and database faults against the real server, measured (figures for
BENCHMARKS.md; tests/test_event_loop.py and tests/test_faults.py hold the same cases
to looser bounds).

Each case starts the service with the README's command (gunicorn, 2 gevent workers):

- ``heavy``: a normal kept-alive client's latency alone, then while four clients loop
  on the heaviest accepted single request (``POST /questions`` with 9,990 characters,
  ``variant=accurate``, ``explain``), then while two loop on the heaviest batch (ten
  such texts); the workers' memory after it; one heavy request's time and CPU.
- ``sqlite-lock``: predictions while another process holds SQLite's write lock for
  12 s and a client of the same worker sends answers; how many predictions took over
  1 s, the slowest.
- ``sqlite-read-only``: the database and its log made immutable, 12 answers at once,
  then writable again: 503s among the next 30 answers over 15 s.
- ``postgresql-hang`` (needs PostgreSQL on 127.0.0.1:5432): the database behind a
  forwarder that stops passing bytes: each endpoint's answer time, then how long until
  feedback is stored again once it passes them.

Run from the repository root: ``python -m bench.hostile [--only CASE ...]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.harness import Forwarder, LiveServer, machine, memory_kib, save_results

LONG = ("the plot drifts , the acting is wooden and the ending makes no sense at all , " * 130)[:9990]
HEAVY: dict = {"query": LONG, "variant": "accurate", "explain": True}
HEAVY_BATCH: dict = {"queries": [LONG] * 10, "variant": "accurate", "explain": True}
logger = logging.getLogger(__name__)


def serve(folder: Path, **env) -> LiveServer:
    server = LiveServer(folder / "server.log", env={"SENTIMENT_CLF_DATA_DIR": str(folder),
                                                    "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "1000 per second",
                                                    **{k: str(v) for k, v in env.items()}})
    server.wait_ready()
    return server


def latencies(url: str, seconds: float) -> list[float]:
    found: list[float] = []
    stop = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < stop:
            started = time.monotonic()
            session.get(f"{url}/", params={"query": "a good film"}, timeout=120)
            found.append(time.monotonic() - started)
            time.sleep(0.02)
    return found


def summary(found: list[float]) -> dict:
    ordered = sorted(found)
    return {"requests": len(ordered), "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "max_ms": 1000 * ordered[-1]}


def under_load(url: str, path: str, body: dict, clients: int, seconds: float) -> dict:
    stop, statuses = threading.Event(), []

    def heavy() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(session.post(f"{url}{path}", json=body, timeout=300).status_code)

    threads = [threading.Thread(target=heavy) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    found = latencies(url, seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return {**summary(found), "heavy_answers": {str(s): statuses.count(s) for s in sorted(set(statuses))}}


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / 100


def heavy(folder: Path, seconds: float) -> dict:
    server = serve(folder)
    try:
        found: dict = {"alone": summary(latencies(server.url, seconds))}
        pids = server.worker_pids()
        before = cpu_seconds(pids)
        started = time.monotonic()
        assert requests.post(f"{server.url}/questions", json=HEAVY, timeout=300).status_code == 200
        found["one_heavy_request"] = {"seconds": time.monotonic() - started,
                                      "worker_cpu_seconds": cpu_seconds(pids) - before}
        found["four_heavy_single_clients"] = under_load(server.url, "/questions", HEAVY, 4, seconds)
        found["worker_memory_mib_after_heavy"] = [
            {k: round(v / 1024, 1) for k, v in memory_kib(pid).items()} for pid in pids]
        found["two_heavy_batch_clients"] = under_load(server.url, "/questions/batch", HEAVY_BATCH, 2, seconds)
        found["worker_memory_mib_after_batches"] = [
            {k: round(v / 1024, 1) for k, v in memory_kib(pid).items()} for pid in server.worker_pids()]
        return found
    finally:
        server.stop()


def sqlite_lock(folder: Path, held: float = 12.0) -> dict:
    import sqlite3

    database = folder / "feedback.sqlite"
    server = serve(folder, SENTIMENT_CLF_WORKERS=1)
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    answer = {"model": "sentiment", "query": "a locked database", "label": "Positive"}
    stop, statuses = threading.Event(), []

    def write() -> None:
        while not stop.is_set():
            statuses.append(requests.post(f"{server.url}/feedback", json=answer, timeout=60).status_code)

    try:
        holder.execute("BEGIN IMMEDIATE")
        writer = threading.Thread(target=write)
        writer.start()
        found = latencies(server.url, held)
        stop.set()
        writer.join()
        holder.execute("ROLLBACK")
        return {**summary(found), "over_1_s": sum(s > 1 for s in found), "lock_held_s": held,
                "answers_meanwhile": {str(s): statuses.count(s) for s in sorted(set(statuses))}}
    finally:
        holder.close()
        server.stop()


def sqlite_read_only(folder: Path) -> dict:
    database = folder / "feedback.sqlite"
    server = serve(folder)
    answer = {"model": "sentiment", "query": "a read-only moment", "label": "Positive"}
    try:
        requests.post(f"{server.url}/feedback", json=answer, timeout=30)
        files = [str(database), f"{database}-wal"]
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            threads = [threading.Thread(target=lambda: requests.post(f"{server.url}/feedback", json=answer,
                                                                     timeout=30)) for _ in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        statuses, ready = [], []
        for _ in range(30):
            statuses.append(requests.post(f"{server.url}/feedback", json=answer, timeout=30).status_code)
            ready.append(requests.get(f"{server.url}/ready", timeout=30).status_code)
            time.sleep(0.5)
        return {"answers_503_of_30": statuses.count(503), "ready_503_of_30": ready.count(503)}
    finally:
        server.stop()


def postgresql_hang(folder: Path, timeout: float = 5.0) -> dict:
    from sqlalchemy import create_engine, text

    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
    name = f"bench_hostile_{int(time.time())}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    forwarder = Forwarder(5432)
    server = serve(folder, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{forwarder.port}/{name}",
                   SENTIMENT_CLF_READY_PROBE_INTERVAL=0)
    answer = {"model": "sentiment", "query": "a hung database", "label": "Positive"}
    found: dict = {}
    try:
        requests.post(f"{server.url}/feedback", json=answer, timeout=30)
        forwarder.hang()
        time.sleep(0.5)
        asked: list[tuple[str, str, str, dict | None]] = [
            ("prediction", "GET", "/?query=good", None), ("health", "GET", "/health", None),
            ("ready", "GET", "/ready", None), ("feedback", "POST", "/feedback", answer),
            ("models", "GET", "/models", None)]
        for label, method, path, body in asked:
            started = time.monotonic()
            status: int | str
            try:
                status = requests.request(method, f"{server.url}{path}", json=body, timeout=60).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            found[label] = {"status": status, "seconds": round(time.monotonic() - started, 2)}
        forwarder.resume()
        started = time.monotonic()
        while requests.post(f"{server.url}/feedback", json=answer, timeout=60).status_code != 201:
            time.sleep(0.1)
        found["stored_again_after_s"] = round(time.monotonic() - started, 2)
        return found
    finally:
        forwarder.close()
        server.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


CASES: dict[str, Callable[[Path], dict]] = {
    "heavy": lambda folder: heavy(folder, 10), "sqlite-lock": sqlite_lock, "sqlite-read-only": sqlite_read_only,
    "postgresql-hang": postgresql_hang}


def _missing(case: str) -> str | None:
    """What this machine lacks for ``case``, in a few words, or None."""
    if case == "sqlite-read-only" and not shutil.which("chattr"):
        return "chattr (e2fsprogs) is not installed"
    if case == "postgresql-hang":
        import socket

        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        except OSError:
            return "no PostgreSQL on 127.0.0.1:5432"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--seconds", type=float, default=10, help="how long the normal client measures, per load")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict = {"machine": machine()}
    for name in args.only:
        missing = _missing(name)
        if missing:
            print(f"{name}: skipped ({missing})", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"hostile-{name}-") as folder:
            results[name] = heavy(Path(folder), args.seconds) if name == "heavy" else CASES[name](Path(folder))
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    results["bench_process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    save_results("hostile.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
