"""Side by side on one machine: this service, a constant-JSON endpoint, and MLServer.

    make bench-compare      # creates .venv-mlserver (MLServer 1.7.1) and runs this

Everything issue #5 compares, in one run: first the in-process limit (one
prediction through scikit-learn, the served model and a plain dictionary model;
phrases/s for a batch of 1,000), then the servers. The same fitted sentiment
pipeline (TF-IDF + multinomial naive Bayes) is served by: this service
(gunicorn, 2 workers, GET /?query=...); the same app and server settings
answering a constant JSON (GET /constant: the cost of a request with no model
work); and MLServer 1.7.1's scikit-learn runtime (V2 inference protocol,
``predict_fn: predict_proba``, the text as a BYTES input decoded as str, 2
parallel workers). Each is started alone and timed to its first answer (cold
start); then all three stay up and wrk (1 thread) loads them in turn, in short
rounds (server A, B, C, A, B, C, ...) at concurrency 1, 8 and 32, so a drift in
the machine's speed during the run falls on all three alike. Requests/s adds up
every round; p50 and p99 are the medians of the rounds'. Then phrases/s through
the service's batch endpoint, and resident memory of the workers after the
load. Writes bench/results/compare.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from bench.bench_predict import batch_texts, in_process, in_process_batch
from bench.harness import (
    free_port,
    machine,
    measure_in_rounds,
    post_script,
    run_wrk,
    run_wrk_batch,
    save_results,
    start_gunicorn,
    stop_group,
    stop_gunicorn,
    wait_until,
    worker_rss_kib,
)

ROOT = Path(__file__).resolve().parents[1]

QUERY = "that movie was boring"
V2_BODY: dict[str, Any] = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [QUERY],
                       "parameters": {"content_type": "str"}}]}


def all_rss_kib(pid: int) -> int:
    """RSS of a process tree's descendants (the workers), summed."""
    total = sum(worker_rss_kib(pid).values())
    for child in worker_rss_kib(pid):
        total += sum(worker_rss_kib(child).values())
    return total


def write_mlserver_model(folder: Path, http_port: int, grpc_port: int, metrics_port: int, workers: int) -> None:
    import joblib
    from sklearn.pipeline import Pipeline

    from sentiment_clf.training.model import NLPModel

    model = NLPModel.load(ROOT / "sentiment-clf" / "lib" / "models" / "sentiment")
    # MLServer's runtime loads a joblib file: the identical fitted objects, re-wrapped.
    joblib.dump(Pipeline([("tfidf", model.vectorizer_), ("nb", model.classifier_)]), folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "sentiment", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}}}))
    (folder / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": workers, "host": "127.0.0.1"}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlserver", default=str(ROOT / ".venv-mlserver" / "bin" / "mlserver"))
    parser.add_argument("--seconds", type=int, default=15, help="load per server and concurrency, in all")
    parser.add_argument("--rounds", type=int, default=5, help="the seconds are split into this many rounds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5000, help="in-process predictions timed")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": machine(), "command": " ".join(["python -m bench.compare_mlserver", *(argv or sys.argv[1:])]),
        "runs": [], "cold_start_s": {}, "worker_rss_mib": {}}
    # The in-process limit first, with the machine to itself.
    models = ROOT / "sentiment-clf" / "lib" / "models"
    results["in_process"] = in_process(models, args.repeats)
    results["in_process_batch_phrases_per_s"] = in_process_batch(models, 1000)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        folder = Path(tmp)
        targets: dict[str, tuple[str, Path | None]] = {}  # name -> (url, wrk script or None)
        processes: dict[str, subprocess.Popen] = {}
        for name, app, path in (("sentiment-clf", "app:create_app()", f"/?query={QUERY.replace(' ', '%20')}"),
                                ("constant JSON (same app and server)", "bench.constant_app:create_app()",
                                 "/constant")):
            port = free_port()
            process = processes[name] = start_gunicorn(app, port, args.workers, folder)
            servers.callback(stop_gunicorn, process)
            url = f"http://127.0.0.1:{port}{path}"
            # timed from just after the process starts, alone on the machine
            results["cold_start_s"][name] = wait_until(lambda url=url: requests.get(url, timeout=2).status_code == 200)
            targets[name] = (url, None)

        mls = folder / "mlserver"
        mls.mkdir()
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        write_mlserver_model(mls, http_port, grpc_port, metrics_port, args.workers)
        url = f"http://127.0.0.1:{http_port}/v2/models/sentiment/infer"
        process = processes["MLServer 1.7.1"] = subprocess.Popen(
            [args.mlserver, "start", str(mls)], cwd=mls, start_new_session=True,
            stdout=(folder / "mlserver.log").open("wb"), stderr=subprocess.STDOUT)
        servers.callback(stop_group, process)
        try:
            results["cold_start_s"]["MLServer 1.7.1"] = wait_until(
                lambda: requests.post(url, json=V2_BODY, timeout=2).status_code == 200)
        except Exception:
            print((folder / "mlserver.log").read_text()[-3000:], file=sys.stderr)
            raise
        results["mlserver_answer"] = requests.post(url, json=V2_BODY, timeout=5).json()["outputs"][0]["data"]
        targets["MLServer 1.7.1"] = (url, post_script(folder / "mlserver.lua", V2_BODY))

        for target_url, target_script in targets.values():  # warm-up
            run_wrk(target_url, 8, 3, target_script)
        results["runs"] = measure_in_rounds(targets, args.seconds, args.rounds, args.concurrency)
        service = targets["sentiment-clf"][0].split("/?")[0]
        results["batch"] = run_wrk_batch(f"{service}/batch", batch_texts(1000), 2, args.seconds, folder)
        for name, process in processes.items():
            results["worker_rss_mib"][name] = all_rss_kib(process.pid) / 1024 / args.workers

    save_results("compare.json", results)
    timings = results["in_process"]
    for path, timing in timings.items():
        print(f"in-process, one prediction, {path}: median {timing['median_ms']:.4f} ms, p99 {timing['p99_ms']:.4f} ms")
    plain = timings["plain dictionary and dot product"]["median_ms"]
    print(f"served / plain dictionary and dot product: {timings['served']['median_ms'] / plain:.2f}x")
    batch, limit = results["batch"], results["in_process_batch_phrases_per_s"]
    print(f"batch: POST /batch, 1,000 phrases, 2 connections: {batch['phrases_per_s']:,.0f} phrases/s "
          f"({batch['non_2xx']} non-2xx); in-process: scikit-learn {limit['sklearn']:,.0f}, "
          f"served model {limit['served']:,.0f} phrases/s")
    print(f"wrk 1 thread, {args.seconds} s per server and concurrency in {args.rounds} rounds, servers in turn")
    print("| server | concurrency | requests/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in results["runs"]:
        print(f"| {run['server']} | {run['connections']} | {run['requests_per_s']:,.0f} | {run['p50_ms']:.2f} | "
              f"{run['p99_ms']:.2f} | {run['non_2xx']} |")
    print("cold start (s):", {k: round(v, 2) for k, v in results["cold_start_s"].items()})
    print("RSS per worker (MiB):", {k: round(v, 1) for k, v in results["worker_rss_mib"].items()})
    print("MLServer's answer for the same text:", results.get("mlserver_answer"))
    print(f"machine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
