"""Do the connections of one gevent worker take turns? gunicorn.conf.py with and
without its ``post_request`` hook (one turn of the event loop after each request),
side by side in one run on one machine:

1. Pipelining: a 1-worker server; one connection sends 3,000 fast-tier predictions in
   one go, and once the first answer is back a health check goes over a second
   connection. Its wait, and how many of the 3,000 had been answered by then.
2. The fast tier at concurrency 8 (2 workers, wrk, kept-alive connections), rounds
   taking turns: requests/s and p50/p90/p99.

Run from the repository root: ``python -m bench.experiments.fairness`` (about 2 minutes).
"""
from __future__ import annotations

import argparse
import json
import logging
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

from bench.bench_accurate import TEXT
from bench.harness import (
    ROOT,
    AnswerCounter,
    combine_rounds,
    free_port,
    machine,
    run_wrk,
    save_results,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
)

CONFIGS = {"with post_request": None,
           "without post_request": ROOT / "bench" / "experiments" / "gunicorn_without_yield.py"}


def behind_a_pipeline(config: Path | None, folder: Path, pipelined: int) -> dict:
    """Seconds a health check waits while another connection's ``pipelined`` requests
    are served by the same (only) worker, and how many were answered by then."""
    port = free_port()
    process = start_gunicorn("app:create_app()", port, 1, folder, config)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/health", timeout=2).status_code == 200)
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            answers = AnswerCounter(sock, pipelined)
            request = f"GET /?query={quote(TEXT)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            started = time.monotonic()
            threading.Thread(target=sock.sendall, args=(request * pipelined,), daemon=True).start()
            answers.wait_for_first()
            asked = time.monotonic()
            status = requests.get(f"{url}/health", timeout=120).status_code
            waited = time.monotonic() - asked
            answered_then = answers.answered
            answers.join(120)
            return {"health_status": status, "health_wait_s": waited, "answered_before_health": answered_then,
                    "pipelined": pipelined, "pipeline_s": time.monotonic() - started}
    finally:
        stop_gunicorn(process)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelined", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5, help="wrk seconds per server per round")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict = {"machine": machine(), "text": TEXT, "pipelining": {}, "c8": {}}
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as folder:
        for name, config in CONFIGS.items():
            results["pipelining"][name] = behind_a_pipeline(config, Path(folder), args.pipelined)
        servers = {}
        try:
            for name, config in CONFIGS.items():
                port = free_port()
                servers[name] = (start_gunicorn("app:create_app()", port, 2, Path(folder), config), port)
            urls = {name: f"http://127.0.0.1:{port}/?query={quote(TEXT)}" for name, (_, port) in servers.items()}
            for url in urls.values():
                wait_until(lambda url=url: requests.get(url, timeout=2).status_code == 200)
            rounds: dict[str, list[dict]] = {name: [] for name in CONFIGS}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    rounds[name].append(run_wrk(url, 8, args.seconds))
        finally:
            for process, _ in servers.values():
                stop_gunicorn(process)
    for name, runs in rounds.items():
        results["c8"][name] = combine_rounds(runs, (50, 90, 99))
    print(f"machine: {results['machine']}")
    for name, row in results["pipelining"].items():
        print(f"{name}: a health check behind {row['pipelined']:,} pipelined predictions waited "
              f"{row['health_wait_s'] * 1000:.0f} ms ({row['answered_before_health']:,} answered by then, all in "
              f"{row['pipeline_s']:.2f} s)")
    print(f"{'fast tier, c=8, medians of ' + str(args.rounds) + ' rounds':44s} {'req/s':>7s} {'p50':>7s} "
          f"{'p90':>7s} {'p99':>7s}")
    for name, row in results["c8"].items():
        print(f"{name:44s} {row['requests_per_s']:7.0f} {row['p50_ms']:7.2f} {row['p90_ms']:7.2f} "
              f"{row['p99_ms']:7.2f}")
    save_results("fairness.json", results)
    print(json.dumps({"saved": "bench/results/fairness.json"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
