"""Scoring a file in bulk: rows per second and peak memory, local and on Dask, beside the
in-process batched limit (``Classifier.predict`` of the same texts in one call).

    python -m bench.bench_scoring [--rows 1000000] [--accurate-rows 5000]

Each job runs ``sentiment-clf predict`` in a process of its own, on a CSV of made-up
review sentences (a fixed seed, so every run scores the same file), fast tier on
``--rows`` rows and accurate tier on ``--accurate-rows``; the Dask engine on a local
cluster of two worker processes. Peak memory is each process's maximum resident set
(the job's, and the largest of its Dask workers'). Results go to bench/results/.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import machine, save_results

WORDS = ("the film movie story acting plot was is a an and but not very too quite really boring dull "
         "wonderful moving witty gorgeous bland forgettable funny sad long short slow brilliant awful "
         "great good bad best worst ending characters script director music").split()


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,text\n")
        for i in range(rows):
            handle.write(f"{i},{' '.join(rng.choice(WORDS) for _ in range(rng.randint(4, 24)))}\n")


def scoring_job(source: Path, output: Path, variant: str, engine: str, chunk_size: int) -> dict:
    command = [sys.executable, "-m", "sentiment_clf.cli", "predict", str(source), "-o", str(output),
               "--variant", variant, "--engine", engine, "--no-progress", "--chunk-size", str(chunk_size)]
    # A wrapper process whose children are this job alone: its RUSAGE_CHILDREN peak is the
    # largest of the job's processes (the job, or one of its Dask workers, which it reaps).
    wrapper = ("import resource, subprocess, sys\n"
               f"done = subprocess.run({command!r}, capture_output=True, text=True)\n"
               "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr[-2000:])\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.exit(done.returncode)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    rows = int(lines[0].split(" rows,")[0].replace(",", ""))
    return {"variant": variant, "engine": engine, "chunk_size": chunk_size, "rows": rows, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds), "peak_rss_mib": round(int(lines[-1]) / 1024), "summary": lines[0]}


def in_process_limit(source: Path, variant: str, rows: int) -> dict:
    code = ("import sys, time, pandas as pd\nfrom sentiment_clf import Classifier\n"
            f"texts = pd.read_csv({str(source)!r}, nrows={rows})['text'].tolist()\n"
            f"c = Classifier.load(accurate={variant == 'accurate'})\nc.predict(texts[:100], variant={variant!r})\n"
            f"t = time.perf_counter(); c.predict(texts, variant={variant!r}); print(time.perf_counter() - t)")
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.strip().splitlines()[-1])
    return {"variant": variant, "engine": "in-process, one call", "rows": rows, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accurate-rows", type=int, default=5_000)
    parser.add_argument("--chunk-size", type=int, default=10_000, help="the fast tier's chunks")
    parser.add_argument("--accurate-chunk-size", type=int, default=250,
                        help="the accurate tier's chunks: ~100x the work a row, so smaller, to keep both workers busy")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "reviews.csv"
        write_csv(source, args.rows)
        for variant, rows, chunk_size in (("fast", args.rows, args.chunk_size),
                                          ("accurate", args.accurate_rows, args.accurate_chunk_size)):
            job_source = source if rows == args.rows else Path(folder) / f"reviews-{rows}.csv"
            if job_source != source:
                write_csv(job_source, rows)
            results.append(in_process_limit(job_source, variant, min(rows, 200_000)))
            for engine in ("local", "dask"):
                results.append(scoring_job(job_source, Path(folder) / f"scored-{variant}-{engine}.parquet",
                                           variant, engine, chunk_size))
                print(results[-1], flush=True)
    save_results("bench_scoring.json", {"machine": machine(), "command": "python -m bench.bench_scoring "
                                        + " ".join(argv or sys.argv[1:]), "results": results})
    for row in results:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
