"""How close any WSGI app on this server could come to the accurate tier's batched limit.

Issue #11's floor asks for requests/s at concurrency 8 of at least 80% of the
in-process batched limit. This measures, in one run on one machine:

1. In-process (no HTTP): the encoder's cost per text at batch sizes 1 to 32 on one
   thread, and the batched limit as bench/bench_accurate.py measures it.
2. Side by side at concurrency 8, rounds taking turns, each with the workers' CPU
   per request: the service (``app:create_app()``) on ``variant=accurate`` and on the
   fast tier, and a bare WSGI app (bench/experiments/bare_app.py: no Flask, no middleware, the
   same gunicorn settings, the same micro-batcher) answering from the accurate head
   and answering a constant JSON.

The bare app's figures bound what trimming the web stack could give: its constant
route is gunicorn's gevent worker alone, and its accurate route is that plus the
model. For the service, the p99 its access log records (the time inside the app)
is printed beside wrk's, which also counts the socket queue and the load generator.
The printed bounds are what 2 cores could serve if every request cost the
forward pass at batch 4 (what 8 connections on 2 workers give a batcher) plus what
a stack's route costs at concurrency 8, with no idle time. Run from the repository root:
``python -m bench.experiments.bare_ceiling`` (about 3 minutes).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

from bench.bench_accurate import TEXT, batched_limit, load_head, where_time_goes
from bench.harness import (
    combine_rounds,
    free_port,
    machine,
    save_results,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
    worker_pids,
)

SIZES = (1, 2, 4, 8, 16, 32)
_DURATION = re.compile(rb'"duration_ms": ([0-9.]+)')


def per_text_ms(rounds: int, seconds_each: float) -> dict[int, float]:
    """Milliseconds of one thread per text, in batches of each size in SIZES (the sizes
    take turns, ``rounds`` times, so a slow spell of the machine falls on all of them)."""
    head = load_head(1)
    done = dict.fromkeys(SIZES, 0)
    spent = dict.fromkeys(SIZES, 0.0)
    for _ in range(rounds):
        for size in SIZES:
            batch = [TEXT] * size
            head.predict_proba(batch)
            started = time.perf_counter()
            while time.perf_counter() - started < seconds_each:
                head.predict_proba(batch)
                done[size] += size
            spent[size] += time.perf_counter() - started
    return {size: 1000 * spent[size] / done[size] for size in SIZES}


def in_app_p99_ms(log: Path, start: int) -> float | None:
    """p99 of the durations the service's access log recorded from byte ``start`` on:
    the time inside the app, without the socket queue, gunicorn's parsing or wrk."""
    with log.open("rb") as file:
        file.seek(start)
        durations = sorted(float(found) for found in _DURATION.findall(file.read()))
    return durations[int(0.99 * len(durations))] if durations else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk seconds per target per round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict = {"machine": machine(), "text": TEXT, "per_text_ms": per_text_ms(5, 1.0),
                     "batched": batched_limit(seconds=5.0)}
    limit = results["batched"]["limit"]
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as folder:
        servers = {}
        try:
            for name, app in (("service", "app:create_app()"), ("bare", "bench.experiments.bare_app:create_app()")):
                port = free_port()
                process = start_gunicorn(app, port, 2, Path(folder))
                servers[name] = (process, port)
            base = {name: f"http://127.0.0.1:{port}" for name, (_, port) in servers.items()}
            targets = {"service, accurate": ("service", f"{base['service']}/?variant=accurate&query={quote(TEXT)}"),
                       "bare app, accurate": ("bare", f"{base['bare']}/?query={quote(TEXT)}"),
                       "service, fast": ("service", f"{base['service']}/?query={quote(TEXT)}"),
                       "bare app, constant": ("bare", f"{base['bare']}/constant")}
            for _, url in targets.values():
                wait_until(lambda url=url: requests.get(url, timeout=2).status_code == 200, timeout=120)
            pids = {name: worker_pids(process.pid) for name, (process, _) in servers.items()}
            rounds: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (server, url) in targets.items():
                    log = Path(folder) / f"{servers[server][1]}.log"  # start_gunicorn's; the bare app logs no requests
                    start = log.stat().st_size
                    run = where_time_goes(url, servers[server][1], pids[server], args.seconds)
                    rounds[name].append({**run, "in_app_p99_ms": in_app_p99_ms(log, start)})
        finally:
            for process, _ in servers.values():
                stop_gunicorn(process)
    results["c8"] = {name: {**combine_rounds(runs, (99,)),
                            "worker_cpu_ms_per_request": statistics.mean(r["worker_cpu_ms_per_request"] for r in runs),
                            "in_app_p99_ms": (statistics.median(r["in_app_p99_ms"] for r in runs)
                                              if runs[0]["in_app_p99_ms"] is not None else None),
                            "connections_by_worker": [r["connections_by_worker"] for r in runs]}
                     for name, runs in rounds.items()}
    costs, c8 = results["per_text_ms"], results["c8"]
    print(f"machine: {results['machine']}")
    print("in-process, one thread, ms a text at batch " +
          ", ".join(f"{size}: {cost:.2f}" for size, cost in costs.items()))
    print(f"batched limit (better of one 2-thread and two 1-thread processes, batch 32): {limit:.0f} sentences/s")
    print(f"{'at concurrency 8':22s} {'req/s':>8s} {'of limit':>9s} {'worker CPU ms/req':>18s} {'p99 ms':>8s} "
          f"{'in-app p99 ms':>14s}")
    for name, row in c8.items():
        in_app = f"{row['in_app_p99_ms']:14.1f}" if row["in_app_p99_ms"] is not None else f"{'-':>14s}"
        print(f"{name:22s} {row['requests_per_s']:8.0f} {row['requests_per_s'] / limit:9.0%} "
              f"{row['worker_cpu_ms_per_request']:18.2f} {row['p99_ms']:8.1f} {in_app}")
    # What the 2 cores could serve if each request cost the forward pass at batch 4 (8
    # connections on 2 workers) plus a stack's cost, as a share of the limit. Costs are
    # in seconds of the whole machine per request, measured with both cores busy: one
    # text at batch 4 is costs[4] / costs[32] times a text of the limit (two processes
    # running at once are slower each than one alone), and a route's whole cost at
    # concurrency 8 is 1 / its requests/s.
    forward = costs[4] / costs[32] / limit
    bounds = {"the forward pass at batch 4 alone, no HTTP": 1 / forward / limit}
    for stack, name in (("bare gevent server", "bare app, constant"), ("service's web stack", "service, fast")):
        bounds[f"the forward pass at batch 4 + the {stack} ({name})"] = (
            1 / (forward + 1 / c8[name]["requests_per_s"]) / limit)
    results["bounds_share_of_limit"] = bounds
    for name, share in bounds.items():
        print(f"bound, {name}: {share:.0%} of the limit")
    save_results("bare_ceiling.json", results)
    print(json.dumps({"saved": "bench/results/bare_ceiling.json"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
