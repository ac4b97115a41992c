"""How wrk's kept-alive connections fall on the 2 gunicorn workers, with the connection
balancing (sentiment_clf/worker_balance.py) off and on, side by side.

For each setting in turn (``--rounds`` times): the service started with the README's
command and ``SENTIMENT_CLF_BALANCE_CONNECTIONS``; ``--runs`` wrk runs on
``variant=accurate`` at concurrency 8, each with fresh connections, the connections
each worker holds counted halfway; then one run of the fast tier at concurrency 8
(does the balancing cost it anything?). Run from the repository root:
``python -m bench.experiments.connections``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

from bench.bench_accurate import TEXT, where_time_goes
from bench.harness import (
    free_port,
    machine,
    run_wrk,
    save_results,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
    worker_pids,
)


def one_server(balance: bool, runs: int, seconds: int, folder: Path) -> dict:
    port = free_port()
    accurate_url = f"http://127.0.0.1:{port}/?variant=accurate&query={quote(TEXT)}"
    fast_url = f"http://127.0.0.1:{port}/?query={quote(TEXT)}"
    os.environ["SENTIMENT_CLF_BALANCE_CONNECTIONS"] = "true" if balance else "false"  # start_gunicorn passes it on
    try:
        process = start_gunicorn("app:create_app()", port, 2, folder)
    finally:
        del os.environ["SENTIMENT_CLF_BALANCE_CONNECTIONS"]
    try:
        wait_until(lambda: requests.get(accurate_url, timeout=2).status_code == 200, timeout=120)
        pids = worker_pids(process.pid)
        accurate = []
        for _ in range(runs):
            time.sleep(0.5)  # the last run's connections closed, both workers idle
            run = where_time_goes(accurate_url, port, pids, seconds)
            accurate.append({**run, "connections_by_worker": sorted(run["connections_by_worker"], reverse=True)})
        fast = run_wrk(fast_url, 8, seconds)
    finally:
        stop_gunicorn(process)
    return {"balance": balance, "accurate_c8": accurate, "fast_c8": fast}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=6, help="wrk runs per server start")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args(argv)
    servers = []
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as folder:
        for _ in range(args.rounds):
            for balance in (False, True):
                servers.append(one_server(balance, args.runs, args.seconds, Path(folder)))
    print(f"machine: {machine()}")
    for balance in (False, True):
        mine = [s for s in servers if s["balance"] == balance]
        runs = [run for s in mine for run in s["accurate_c8"]]
        print(f"balancing {'on ' if balance else 'off'}: accurate c=8, connections per worker and req/s: "
              + ", ".join(f"{run['connections_by_worker']} {run['requests_per_s']:.0f}" for run in runs))
        print(f"    median {statistics.median(run['requests_per_s'] for run in runs):.0f} req/s; "
              f"fast tier c=8: " + ", ".join(f"{s['fast_c8']['requests_per_s']:.0f}" for s in mine) + " req/s")
    save_results("connections.json", {"machine": machine(), "servers": servers})
    print(json.dumps({"saved": "bench/results/connections.json"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
