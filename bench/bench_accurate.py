"""The accurate tier's speed and memory, in one run on one machine.

1. The limit, in-process: one sentence's p50/p99 through the int8 encoder and a head
   (no HTTP, no micro-batcher), and sentences/s in calls of 32 (each read alone, as the
   service reads every text), for one process with two threads and for two one-thread
   processes side by side (as the two gunicorn workers run); the better of the two is
   "the batched limit" (the name it had when texts shared a forward pass).
2. The service (gunicorn, 2 workers, the README's command) on ``variant=accurate`` at
   concurrency 1, 8 and 32: concurrent requests in a worker queue for the network.
3. Side by side, rounds taking turns: MLServer 1.7.1's HuggingFace runtime serving the
   same fine-tuned encoder (bench/mlserver_hf.py: the committed int8 weights of the
   encoder that serves sentiment, dequantized to fp32, so no fine-tuning run is needed;
   ``.venv-mlserver-hf`` from the Makefile).
4. Worker memory with both tiers loaded, cold start to the first accurate answer, and
   the fast tier at concurrency 8 in the same server.
5. The hate-speech head with and without its partner (sentiment_clf/partners.py),
   in-process, one tweet at a time, taking turns: what the blend adds to a request, and
   the partner's memory.
6. Where the time goes at concurrency 8, one more run of each tier: the workers' CPU
   seconds per request, and how wrk's 8 kept-alive connections fall on the 2 workers
   (counted halfway through). The fast tier's requests cost the HTTP stack and a 30 µs
   model, so ``1 / (1 / batched limit + 1 / fast req/s)`` is about what 2 cores could
   serve if every accurate request cost its forward pass plus that stack: the ceiling.

Every request sends the same review sentence (MLServer too). Run from the repository
root: ``python -m bench.bench_accurate`` (``--no-mlserver`` skips 3, ``--in-process`` runs
1 and 5 only).
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

from bench.harness import (
    connections_by_worker,
    free_port,
    machine,
    measure_in_rounds,
    memory_kib,
    post_script,
    run_wrk,
    save_results,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
    worker_pids,
)
from sentiment_clf.paths import MODELS_DIR

MODEL_DIR = MODELS_DIR / "accurate"
TEXT = "a gorgeous, witty and moving film that never quite finds its footing but still leaves you smiling"
BATCH = 32
# Tweets for the partner's cost: short, long, stretched spellings, a mention and a link.
TWEETS = ["RT @user: you are a wonderful person, thank you", "lmaooo this is sooo stupid",
          "@user I hate those people so much http://t.co/x", "what a game tonight!!! #win",
          "bitches be like that", "good morning y'all, have a blessed day " * 3,
          "u r such a clown lol", "that movie was trash and the ending made no sense at all"]

logger = logging.getLogger(__name__)


def load_head(threads: int):
    from sentiment_clf.serving.accurate import load_accurate

    return load_accurate(MODEL_DIR, threads=threads)["sentiment"]


def one_sentence(threads: int, repeats: int) -> dict:
    head = load_head(threads)
    for _ in range(50):
        head.predict_proba([TEXT])
    timings = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        head.predict_proba([TEXT])
        timings.append(time.perf_counter_ns() - started)
    timings.sort()
    return {"threads": threads, "repeats": repeats, "p50_ms": statistics.median(timings) / 1e6,
            "p99_ms": timings[int(0.99 * len(timings))] / 1e6}


def _batched_rate(threads: int, seconds: float, start_at: float | None = None) -> tuple[int, float]:
    head = load_head(threads)
    batch = [TEXT] * BATCH
    head.predict_proba(batch)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        head.predict_proba(batch)
        done += BATCH
    return done, time.perf_counter() - started


def batched_limit(seconds: float) -> dict:
    """Sentences/s in batches: one 2-thread process, and two 1-thread processes at once."""
    done, elapsed = _batched_rate(2, seconds)
    one_process = done / elapsed
    start_at = time.time() + 3  # both processes loaded before either starts counting
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_batched_rate, [(1, seconds, start_at)] * 2)
    two_processes = sum(d / e for d, e in results)
    return {"batch": BATCH, "one_process_2_threads": one_process, "two_processes_1_thread": two_processes,
            "limit": max(one_process, two_processes)}


def partner_cost(repeats: int) -> dict:
    """The hate-speech head's one-tweet time with its partner and without it (the same head,
    ``partner=None``), taking turns, one thread; and the partner's memory once loaded."""
    import copy
    import tracemalloc

    from sentiment_clf.serving.accurate import PARTNER_FILE, load_accurate
    from sentiment_clf.serving.formats import unpack_arrays
    from sentiment_clf.serving.partners import TextPartner

    head = load_accurate(MODEL_DIR, threads=1)["hatespeech"]
    if head.partner is None:
        return {}
    alone = copy.copy(head)
    alone.partner = None
    timings: dict[str, list[int]] = {"with": [], "without": []}
    for round_ in range(repeats):
        for name, which in (("with", head), ("without", alone))[::1 if round_ % 2 else -1]:
            text = TWEETS[round_ % len(TWEETS)]
            started = time.perf_counter_ns()
            which.predict_proba([text])
            timings[name].append(time.perf_counter_ns() - started)
    arrays = unpack_arrays((MODEL_DIR / PARTNER_FILE.format("hatespeech")).read_bytes())
    tracemalloc.start()
    partner = TextPartner(head.labels, arrays, head.partner.weight, "")
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    long_text = " ".join(TWEETS) * 20
    started = time.perf_counter_ns()
    partner.log_proba(long_text)
    long_ns = time.perf_counter_ns() - started
    return {"repeats": repeats, "p50_with_ms": statistics.median(timings["with"]) / 1e6,
            "p50_without_ms": statistics.median(timings["without"]) / 1e6,
            "partner_memory_mib": memory / 2**20, "long_text_chars": len(long_text), "long_text_ms": long_ns / 1e6}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def where_time_goes(url: str, port: int, pids: list[int], seconds: int) -> dict:
    """One wrk run at concurrency 8 on ``url``: req/s, the workers' CPU per request, and
    the connections each worker held halfway through."""
    held: list[int] = []
    counter = threading.Timer(seconds / 2, lambda: held.extend(connections_by_worker(pids, port)))
    before = sum(cpu_seconds(pid) for pid in pids)
    counter.start()
    run = run_wrk(url, 8, seconds)
    counter.join()
    spent = sum(cpu_seconds(pid) for pid in pids) - before
    return {**run, "worker_cpu_ms_per_request": 1000 * spent / max(1, run["requests"]),
            "connections_by_worker": held}


def serve_and_measure(folder: Path, seconds: int, concurrency: list[int], hf_dir: Path | None) -> dict:
    port = free_port()
    accurate_url = f"http://127.0.0.1:{port}/?variant=accurate&query={quote(TEXT)}"
    fast_url = f"http://127.0.0.1:{port}/?query={quote(TEXT)}"
    started = time.perf_counter()
    process = start_gunicorn("app:create_app()", port, 2, folder)
    try:
        cold_start = wait_until(lambda: requests.get(accurate_url, timeout=2).status_code == 200, timeout=120)
        cold_start = time.perf_counter() - started
        answer = requests.get(accurate_url, timeout=5).json()
        targets: dict = {"service accurate": (accurate_url, None)}
        mlserver_context = None
        if hf_dir is not None:
            from bench.mlserver_hf import convert_hf_dir, serve, v2_body  # noqa: F401 - convert used by serve

            mlserver_context = serve(hf_dir)
            server = mlserver_context.__enter__()
            targets["mlserver-huggingface"] = (server.infer_url, post_script(folder / "v2.lua", v2_body(TEXT)))
        try:
            runs = measure_in_rounds(targets, seconds, rounds=max(1, seconds // 5), concurrency=concurrency)
        finally:
            if mlserver_context is not None:
                mlserver_context.__exit__(None, None, None)
        fast = run_wrk(fast_url, 8, seconds)
        pids = worker_pids(process.pid)
        memory = [memory_kib(pid) for pid in pids]
        breakdown = {"accurate": where_time_goes(accurate_url, port, pids, seconds),
                     "fast": where_time_goes(fast_url, port, pids, seconds)}
    finally:
        stop_gunicorn(process)
    return {"cold_start_s": cold_start, "answer": answer, "runs": runs, "fast_c8": fast, "worker_memory_kib": memory,
            "c8_breakdown": breakdown}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20,
                        help="wrk load per server and concurrency, in rounds of 5 s taking turns")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=500, help="in-process single sentences timed")
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer's HuggingFace runtime")
    parser.add_argument("--in-process", action="store_true", help="only the in-process figures (no servers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict = {"machine": machine(), "text": TEXT,
                     "one_sentence": [one_sentence(1, args.repeats), one_sentence(2, args.repeats)],
                     "partner": partner_cost(args.repeats)}
    print(f"machine: {results['machine']}")
    for row in results["one_sentence"]:
        print(f"in-process, one sentence, {row['threads']} thread(s): p50 {row['p50_ms']:.2f} ms, "
              f"p99 {row['p99_ms']:.2f} ms")
    partner = results["partner"]
    if partner:
        print(f"hate speech, one tweet, 1 thread: p50 {partner['p50_with_ms']:.2f} ms with its partner, "
              f"{partner['p50_without_ms']:.2f} ms without; the partner holds {partner['partner_memory_mib']:.1f} "
              f"MiB and reads a {partner['long_text_chars']:,}-character text in {partner['long_text_ms']:.1f} ms")
    if args.in_process:
        save_results("bench_accurate_in_process.json", results)
        return 0
    results["batched"] = batched_limit(seconds=5.0)
    with tempfile.TemporaryDirectory(prefix="bench-accurate-") as folder:
        hf_dir = None
        if not args.no_mlserver:  # the peer's model from the committed one: no fine-tuning run needed
            from bench.mlserver_hf import hf_dir_from_model

            hf_dir = hf_dir_from_model(MODEL_DIR, Path(folder) / "hf")
        results.update(serve_and_measure(Path(folder), args.seconds, args.concurrency, hf_dir))
    limit = results["batched"]["limit"]
    by = {(r["server"], r["connections"]): r for r in results["runs"]}
    print(f"in-process, {BATCH} texts a call: {results['batched']['one_process_2_threads']:.0f} sentences/s in one "
          f"2-thread process, {results['batched']['two_processes_1_thread']:.0f} in two 1-thread processes; "
          f"limit {limit:.0f}")
    print(f"{'server':24s} {'c':>3s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for run in results["runs"]:
        print(f"{run['server']:24s} {run['connections']:3d} {run['requests_per_s']:8.1f} {run['p50_ms']:8.2f} "
              f"{run['p99_ms']:8.2f} {run['non_2xx']:8d}")
    service8 = by.get(("service accurate", 8))
    if service8:
        print(f"service at c=8: {service8['requests_per_s'] / limit:.0%} of the in-process batched limit")
        peer = by.get(("mlserver-huggingface", 8))
        if peer:
            print(f"service / MLServer-HF at c=8: {service8['requests_per_s'] / peer['requests_per_s']:.1f}x "
                  f"req/s, p99 {service8['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms")
    print(f"fast tier in the same server, c=8: {results['fast_c8']['requests_per_s']:.0f} req/s, "
          f"p99 {results['fast_c8']['p99_ms']:.2f} ms")
    breakdown = results["c8_breakdown"]
    ceiling = 1 / (1 / limit + 1 / breakdown["fast"]["requests_per_s"])
    results["c8_ceiling"] = ceiling
    for tier in ("accurate", "fast"):
        row = breakdown[tier]
        print(f"c=8 again, {tier}: {row['requests_per_s']:.0f} req/s, worker CPU "
              f"{row['worker_cpu_ms_per_request']:.2f} ms a request, connections per worker "
              f"{row['connections_by_worker']}")
    print(f"c=8 ceiling on these cores, 1 / (1 / limit + 1 / fast req/s): {ceiling:.0f} req/s, "
          f"{ceiling / limit:.0%} of the batched limit; the accurate run above reached "
          f"{breakdown['accurate']['requests_per_s'] / ceiling:.0%} of it")
    for i, memory in enumerate(results["worker_memory_kib"]):
        print(f"worker {i}: RSS {memory['rss'] / 1024:.1f} MiB, private {memory['private'] / 1024:.1f} MiB")
    print(f"cold start to the first accurate answer: {results['cold_start_s']:.2f} s")
    save_results("bench_accurate.json", results)
    print(json.dumps({"saved": "bench/results/bench_accurate.json"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
