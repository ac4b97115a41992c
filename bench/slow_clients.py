"""Benchmark: prediction latency while 256 slow or idle connections hold the server.

    .venv/bin/python -m bench.slow_clients            # or: make bench-slow

The service is started as ``make run`` starts it (the README's command, 2 workers,
the default keep-alive), on a free port and a temporary database. Then:

1. How long the server keeps a connection that sends nothing open: one fresh
   connection, and one that has been answered once (kept alive), each timed until
   the server closes it; and one that sends its request head a byte a second
   (slowloris).
2. Normal predictions (``GET /?query=...`` with review sentences) from a few client
   threads, each on one kept-alive connection, paced to a steady total rate, for
   ``--seconds`` without slow clients (the baseline), then for as long again while
   another process holds ``--slow`` connections open: half send nothing, half send a
   request head one byte a second that never ends; whenever the server closes one
   it is opened again. Latency p50/p99/max, errors, and the ratio of the two runs.

The issue's floor: p99 at most 100 ms with 256 slow connections. Not a test: it
prints the figures and writes them as JSON to bench/results/slow_clients.json.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.harness import LiveServer, machine, save_results, seconds_until_closed

SENTENCES = [
    "that movie was boring",
    "a gorgeous , witty , seductive movie",
    "it 's not a bad film , but it is n't a good one either",
    "The acting is superb and the story kept me guessing until the very end.",
    "Effective but too-tepid biopic",
    "Emerges as something rare , an issue movie that 's so honest and keenly observed that it does n't feel like one .",
    "The film provides some great insight into the neurotic mindset of all comics .",
    "Offers that rare combination of entertainment and education .",
    "a dull , lifeless film that never finds its footing",
    "I laughed, I cried, and I would happily watch it again tomorrow.",
    "Two hours of my life I will never get back.",
    "the performances are fine but the script is a mess",
]
# A slowloris head: the request line and then header bytes, one a second, forever.
SLOW_HEAD = b"GET /?query=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100_000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(latencies_ms: list[float], errors: int, seconds: float) -> dict:
    if not latencies_ms:  # every request failed (sync workers held by slow clients, for one)
        return {"requests": 0, "errors": errors, "requests_per_s": 0.0, "p50_ms": None, "p99_ms": None,
                "max_ms": None}
    return {"requests": len(latencies_ms), "errors": errors, "requests_per_s": len(latencies_ms) / seconds,
            "p50_ms": statistics.median(latencies_ms), "p99_ms": percentile(latencies_ms, 0.99),
            "max_ms": max(latencies_ms)}


def predict_load(port: int, seconds: float, threads: int, rate: float) -> dict:
    """``threads`` clients, each on a kept-alive connection, sending GET /?query=... at
    ``rate`` requests/s in all (each thread rate/threads, evenly spaced)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    interval = threads / rate
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        due = time.monotonic() + index * interval / threads  # stagger the threads
        i = index
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if due > now:
                time.sleep(due - now)
            due += interval
            path = "/?query=" + quote(SENTENCES[i % len(SENTENCES)])
            i += 1
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[index] += 1
                    continue
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            latencies[index].append((time.perf_counter() - started) * 1000)
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return summary([x for per_thread in latencies for x in per_thread], sum(errors), time.monotonic() - started)


def hold_slow_connections(port: int, count: int, stop, ready, out) -> None:
    """In a process of its own: ``count`` connections, half idle, half slowloris, each
    opened again when the server closes it, until ``stop`` is set. Puts the number of
    reopenings, the lifetimes of the closed connections and the fewest open at once."""
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, tuple[str, float, int]] = {}  # socket -> (kind, opened at, bytes sent)
    lifetimes: dict[str, list[float]] = {"idle": [], "slowloris": []}
    failures = 0

    def open_one(kind: str) -> None:
        nonlocal failures
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            failures += 1
            return
        sock.setblocking(False)
        opened[sock] = (kind, time.monotonic(), 0)
        selector.register(sock, selectors.EVENT_READ)

    def close_one(sock: socket.socket) -> None:
        kind, since, _ = opened.pop(sock)
        selector.unregister(sock)
        sock.close()
        lifetimes[kind].append(time.monotonic() - since)
        open_one(kind)

    for i in range(count):
        open_one("idle" if i % 2 == 0 else "slowloris")
    ready.set()
    fewest_open = len(opened)
    next_byte = time.monotonic() + 1
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if sock.recv(65536):
                    continue  # an answer (a 400 for a head over the limit); the close follows
            except BlockingIOError:
                continue
            except OSError:
                pass
            close_one(sock)
        if time.monotonic() >= next_byte:
            next_byte += 1
            for sock, (kind, since, sent) in list(opened.items()):
                if kind != "slowloris":
                    continue
                try:
                    sock.send(SLOW_HEAD[sent % len(SLOW_HEAD):][:1])
                    opened[sock] = (kind, since, sent + 1)
                except OSError:
                    close_one(sock)
        while len(opened) < count:  # a failed reopening: try again
            open_one("idle" if sum(k == "idle" for k, _, _ in opened.values()) < count // 2 else "slowloris")
        fewest_open = min(fewest_open, len(opened))
    for sock in list(opened):
        sock.close()
    out.put({"connections": count, "reopened": sum(len(v) for v in lifetimes.values()),
             "failed_connects": failures, "fewest_open": fewest_open,
             "lifetime_s": {kind: {"closed": len(v), "median": statistics.median(v), "max": max(v)}
                            for kind, v in lifetimes.items() if v}})


def time_to_close(port: int, kind: str, limit: float = 120) -> float:
    """Seconds until the server closes a connection that sends nothing ("fresh"), that
    was answered once and then sends nothing ("kept alive"), or that sends its head a
    byte a second ("slowloris")."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        if kind == "kept alive":
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += sock.recv(65536)
        return seconds_until_closed(sock, limit, SLOW_HEAD if kind == "slowloris" else b"", interval=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each of the two runs")
    parser.add_argument("--slow", type=int, default=256, help="slow connections held open")
    parser.add_argument("--threads", type=int, default=4, help="client threads sending predictions")
    parser.add_argument("--rate", type=float, default=200, help="predictions per second, all threads together")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                               "command": " ".join(["python -m bench.slow_clients", *(argv or sys.argv[1:])]),
                               "workers": args.workers, "threads": args.threads, "rate": args.rate}
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "server.log", workers=args.workers, env={"SENTIMENT_CLF_DATA_DIR": tmp})
        try:
            server.wait_ready()
            port = server.port
            kinds = ("fresh", "kept alive", "slowloris")
            with ThreadPoolExecutor(len(kinds)) as pool:  # the three at once
                results["close_after_s"] = dict(zip(kinds, pool.map(lambda kind: time_to_close(port, kind), kinds),
                                                    strict=True))
            predict_load(port, 2, args.threads, args.rate)  # warm-up
            results["baseline"] = predict_load(port, args.seconds, args.threads, args.rate)

            context = multiprocessing.get_context("spawn")
            stop, ready, out = context.Event(), context.Event(), context.Queue()
            holder = context.Process(target=hold_slow_connections, args=(port, args.slow, stop, ready, out))
            holder.start()
            ready.wait(60)
            time.sleep(1)
            results["with_slow_connections"] = predict_load(port, args.seconds, args.threads, args.rate)
            stop.set()
            results["slow_connections"] = out.get(timeout=60)
            holder.join(30)
            results["server_log_tracebacks"] = server.log().count("Traceback")
        finally:
            server.stop()

    base, slow = results["baseline"], results["with_slow_connections"]
    for key in ("p50", "p99"):
        both = slow[f"{key}_ms"] is not None and base[f"{key}_ms"]
        results[f"{key}_ratio"] = slow[f"{key}_ms"] / base[f"{key}_ms"] if both else None
    save_results("slow_clients.json", results)
    print("server closes a connection that sends nothing after (s):",
          {k: round(v, 2) for k, v in results["close_after_s"].items()})
    print(f"\nGET /?query=..., {args.threads} client threads on kept-alive connections, {args.rate:g} requests/s "
          f"in all, {args.seconds:g} s each, gunicorn {args.workers} workers")
    print("| run | requests | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, run in (("no slow connections", base), (f"{args.slow} slow connections", slow)):
        figures = " | ".join("-" if run[key] is None else f"{run[key]:.2f}" for key in ("p50_ms", "p99_ms", "max_ms"))
        print(f"| {name} | {run['requests']} | {figures} | {run['errors']} |")
    ratios = ", ".join(f"{key} ratio " + ("-" if results[f"{key}_ratio"] is None else f"{results[f'{key}_ratio']:.2f}")
                       for key in ("p50", "p99"))
    print(f"{ratios} (floor: p99 <= 100 ms)")
    print("slow connections:", results["slow_connections"])
    print(f"machine: {results['machine']}")
    return 0 if slow["p99_ms"] is not None and slow["p99_ms"] <= 100 and slow["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
