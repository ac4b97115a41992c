"""Soak run: a steady rate of mixed requests for minutes; no failure, worker memory flat.

    .venv/bin/python bench/soak.py                    # 10 minutes at 300 requests/s
    .venv/bin/python bench/soak.py --minutes 1 --rate 100

The service is started with the README's command (2 workers, a fresh SQLite
database). The mix: single predictions on every endpoint (90%), batches of 10
texts (9%), and feedback (1%, rate limit raised so it is not what is measured).
Worker memory (RSS) is read after the warm-up and at the end. Not a test: it
prints figures for BENCHMARKS.md and writes them to bench/results/soak.json.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.harness import LiveServer, save_results, worker_rss_kib

ROOT = Path(__file__).resolve().parents[1]

PHRASES = ["that movie was boring", "a gorgeous , witty , seductive movie", "what is the capital of peru ?",
           "RT @user: these hoes aint loyal", "it 's not a bad film , but it is n't a good one either",
           "How many people live in Lima ?", "the weather in portland is lovely today"]
ENDPOINTS = ["/", "/ratings", "/hatespeech", "/questions"]


def one_request(session: requests.Session, url: str, rng: random.Random) -> tuple[int, float]:
    text = f"{rng.choice(PHRASES)} {rng.randint(0, 999)}"
    started = time.perf_counter()
    roll = rng.random()
    if roll < 0.90:
        response = session.get(url + rng.choice(ENDPOINTS), params={"query": text}, timeout=10)
    elif roll < 0.99:
        endpoint = rng.choice(ENDPOINTS).rstrip("/") + "/batch"
        response = session.post(url + endpoint, json={"queries": [text] * 10}, timeout=10)
    else:
        label = rng.choice(["Negative", "Positive"])
        response = session.post(url + "/feedback", json={"model": "sentiment", "query": text, "label": label},
                                timeout=10)
    return response.status_code, time.perf_counter() - started


def run(url: str, rate: float, seconds: float, threads: int = 16) -> dict:
    """Send ``rate`` requests a second for ``seconds``, paced, from ``threads`` threads."""
    local = threading.local()
    outcomes: list[tuple[int | str, float]] = []
    lock = threading.Lock()

    def task(i):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        rng = random.Random(i)
        outcome: tuple[int | str, float]  # (status, seconds), or (the exception's name, 0.0)
        try:
            outcome = one_request(local.session, url, rng)
        except requests.RequestException as exc:
            outcome = (type(exc).__name__, 0.0)
        with lock:
            outcomes.append(outcome)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        i = 0
        while (now := time.monotonic() - started) < seconds:
            due = int(now * rate)
            while i < due:
                pool.submit(task, i)
                i += 1
            time.sleep(0.002)
    elapsed = time.monotonic() - started
    latencies = sorted(seconds for status, seconds in outcomes if status in (200, 201))
    failures = [status for status, _ in outcomes if status not in (200, 201)]
    return {"requests": len(outcomes), "seconds": round(elapsed, 1), "achieved_rate": len(outcomes) / elapsed,
            "failures": len(failures), "failure_kinds": sorted({str(f) for f in failures}),
            "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
            "p99_ms": latencies[int(0.99 * len(latencies))] * 1000 if latencies else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=300, help="requests per second")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before memory is first read")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "server.log", workers=args.workers, env={
            "SENTIMENT_CLF_DATA_DIR": tmp, "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "1000000 per minute",
            "SENTIMENT_CLF_CLIENT_LEARNING_BUDGET": "1000000 per day",  # one address sends every answer
            "SENTIMENT_CLF_ACCESS_LOG": "false"})
        try:
            server.wait_ready()
            warmup = run(server.url, args.rate, args.warmup)
            rss_warm = worker_rss_kib(server.process.pid)
            soak = run(server.url, args.rate, args.minutes * 60)
            rss_end = worker_rss_kib(server.process.pid)
        finally:
            server.stop()

    growth = {pid: (rss_end.get(pid, 0) - kib) / kib * 100 for pid, kib in rss_warm.items()}
    results = {"command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])]), "rate": args.rate,
               "minutes": args.minutes, "workers": args.workers, "warmup": warmup, "soak": soak,
               "rss_kib_after_warmup": rss_warm, "rss_kib_at_end": rss_end,
               "rss_growth_percent": growth, "same_workers": set(rss_warm) == set(rss_end)}
    save_results("soak.json", results)
    print(f"soak: {soak['requests']:,} requests in {soak['seconds']} s ({soak['achieved_rate']:.0f}/s), "
          f"{soak['failures']} failed {soak['failure_kinds']}, "
          f"p50 {soak['p50_ms']:.2f} ms, p99 {soak['p99_ms']:.2f} ms")
    for pid, kib in rss_warm.items():
        print(f"worker {pid}: RSS {kib / 1024:.1f} MiB after warm-up, {rss_end.get(pid, 0) / 1024:.1f} MiB at the end "
              f"({growth[pid]:+.1f}%)")
    ok = soak["failures"] == 0 and results["same_workers"] and all(abs(g) <= 10 for g in growth.values())
    print("within the floor (no failure, memory within 10%)" if ok else "OUTSIDE the floor")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
