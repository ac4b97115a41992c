"""Benchmark: what a worker costs, in memory and in time to start.

    .venv/bin/python -m bench.bench_workers          # part of: make bench

1. Cold start to first answer: the service started with the README's command
   (``gunicorn --chdir sentiment-clf 'app:create_app()'``, 2 workers) until a
   prediction answers 200, against the same app with one constant-JSON route
   (``bench/constant_app.py``) started the same way until ``/constant`` answers;
   alternately, ``--rounds`` times each, medians and their ratio.
2. Memory per worker with all five models loaded, after every kind of request
   (predictions with explanations on every endpoint, batches, feedback, pages):
   private (unshared) memory, the pages only this worker holds, from
   ``/proc/<pid>/smaps_rollup`` (Private_Clean + Private_Dirty), and RSS and PSS.

Not a test: it prints figures for BENCHMARKS.md and writes them as JSON to
bench/results/workers.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from bench.harness import (
    free_port,
    gunicorn_path,
    machine,
    memory_kib,
    save_results,
    server_side,
    socket_owners,
    worker_pids,
)

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2  # the default, which start() keeps
APPS = {"service": ("app:create_app()", "/?query=that%20movie%20was%20boring"),
        "constant JSON app": ("bench.constant_app:create_app()", "/constant")}
WARM_UP: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/", {"query": "that movie was boring", "explain": "1"}),
    ("GET", "/ratings", {"query": "a gorgeous , witty , seductive movie", "explain": "1"}),
    ("GET", "/hatespeech", {"query": "RT @user: you are a wonderful person", "explain": "1"}),
    ("GET", "/questions", {"query": "what is the capital of peru ?", "explain": "1"}),
    ("POST", "/questions/batch", {"queries": ["how far is it to the moon ?"] * 50, "explain": True}),
    ("POST", "/feedback", {"model": "sentiment", "query": "a dull , lifeless film", "label": "Negative"}),
    ("GET", "/ui", None), ("GET", "/docs", None), ("GET", "/metrics", None), ("GET", "/models", None)
]


def start(app: str, port: int, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "SENTIMENT_CLF_PORT": str(port), "SENTIMENT_CLF_DATA_DIR": str(folder),
           # every answer comes from one address: lift its limits so the workers learn them all
           "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "100000 per minute",
           "SENTIMENT_CLF_CLIENT_LEARNING_BUDGET": "100000 per day"}
    command = [gunicorn_path(), app] if app.startswith("bench.") else \
        [gunicorn_path(), "--chdir", "sentiment-clf", app]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def first_answer(url: str, started: float, timeout: float = 60.0) -> float:
    """Seconds from ``started`` until ``url`` answers 200."""
    while time.perf_counter() - started < timeout:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def cold_starts(rounds: int, folder: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in APPS}
    for i in range(rounds):
        for name, (app, path) in APPS.items():
            port = free_port()
            started = time.perf_counter()
            process = start(app, port, folder / f"{i}-{port}")
            try:
                times[name].append(first_answer(f"http://127.0.0.1:{port}{path}", started))
            finally:
                stop(process)
    return times


def serving_worker(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server side of the connection from ``client_port``."""
    owners = socket_owners(pids)
    for remote, inode in server_side(server_port):
        if remote == client_port:
            return owners.get(inode)
    return None


def one_connection_per_worker(port: int, pids: list[int], tries: int = 20) -> dict[int, http.client.HTTPConnection]:
    """A kept-alive connection to each worker. A gevent worker keeps a connection for
    all its requests, and new connections mostly go to whichever worker wakes first, so
    connections are opened in bursts until each worker holds one."""
    held: dict[int, http.client.HTTPConnection] = {}
    for _ in range(tries):
        burst = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(8)]
        for conn in burst:
            conn.connect()
        for conn in burst:
            conn.request("GET", "/health")
            conn.getresponse().read()
            assert conn.sock is not None
            pid = serving_worker(pids, port, conn.sock.getsockname()[1])
            if pid is not None and pid not in held:
                held[pid] = conn
            else:
                conn.close()
        if len(held) == len(pids):
            return held
    raise RuntimeError(f"could not reach every worker: {sorted(held)} of {pids}")


def worker_memory(requests_per_kind: int, folder: Path) -> list[dict[str, int]]:
    port = free_port()
    process = start(APPS["service"][0], port, folder / "memory")
    url = f"http://127.0.0.1:{port}"
    try:
        first_answer(url + APPS["service"][1], time.perf_counter())
        deadline = time.monotonic() + 30
        while len(pids := worker_pids(process.pid)) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)  # the first worker can answer before the last is forked
        connections = one_connection_per_worker(port, pids)
        for i in range(requests_per_kind):
            for method, path, body in WARM_UP:
                for conn in connections.values():  # every kind of request, in every worker
                    if method == "GET":
                        query = body and "?" + urlencode({**body, "query": f"{body['query']} {i}"})
                        conn.request("GET", path + (query or ""))
                    else:
                        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    if response.status >= 400:
                        raise RuntimeError(f"{method} {path}: {response.status}")
        for conn in connections.values():
            conn.close()
        time.sleep(1)
        return [memory_kib(pid) for pid in pids]
    finally:
        stop(process)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="cold starts of each app")
    parser.add_argument("--requests", type=int, default=200, help="warm-up requests of each kind")
    args = parser.parse_args(argv)
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                     "command": " ".join(["python -m bench.bench_workers", *(argv or sys.argv[1:])])}
    with tempfile.TemporaryDirectory() as tmp:
        times = cold_starts(args.rounds, Path(tmp))
        results["cold_start_s"] = times
        results["memory_kib"] = worker_memory(args.requests, Path(tmp))
    medians = {name: statistics.median(values) for name, values in times.items()}
    results["cold_start_ratio"] = medians["service"] / medians["constant JSON app"]
    print(f"cold start to first answer, median of {args.rounds} (s): "
          + ", ".join(f"{name} {value:.2f} (runs: {', '.join(f'{t:.2f}' for t in times[name])})"
                      for name, value in medians.items()))
    print(f"service / constant JSON app: {results['cold_start_ratio']:.2f}x")
    print("| worker | private MiB | RSS MiB | PSS MiB | shared MiB |")
    print("|---|---:|---:|---:|---:|")
    for i, memory in enumerate(results["memory_kib"], start=1):
        print(f"| {i} | {memory['private'] / 1024:.1f} | {memory['rss'] / 1024:.1f} | "
              f"{memory['pss'] / 1024:.1f} | {memory['shared'] / 1024:.1f} |")
    save_results("workers.json", results)
    print(f"machine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
