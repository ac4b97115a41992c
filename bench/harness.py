"""What the tests and the benchmarks share.

Starting and stopping servers and their peers: the service under gunicorn with the
README's command on a free port (:class:`LiveServer`), the processes and connections of
its workers, a client counting pipelined answers, a slow client, a TCP forwarder that
makes a database hang or vanish on demand (:class:`Forwarder`); for the benchmarks,
gunicorn serving any app with the repository's settings (:func:`start_gunicorn`) and
MLServer's process group stopped (:func:`stop_group`). wrk rounds: one run
(:func:`run_wrk`), a POST script, a batch run, rounds taking turns between servers and
combined (:func:`measure_in_rounds`, :func:`combine_rounds`). Memory: a process's
smaps_rollup and the RSS of a master's workers. Results files: the machine's
description and bench/results/ (:func:`save_results`).

Both import it as ``bench.harness`` (the tests have the repository's root on their path);
nothing here imports from either.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def gunicorn_command() -> str | None:
    """gunicorn next to this Python (the project's venv), else on PATH."""
    candidate = Path(sys.executable).parent / "gunicorn"
    return str(candidate) if candidate.exists() else shutil.which("gunicorn")


def gunicorn_path() -> str:
    """:func:`gunicorn_command`, which must find gunicorn."""
    command = gunicorn_command()
    if command is None:
        raise RuntimeError("gunicorn is not installed")
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> the pid (of ``pids``) that holds it."""
    owners = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def server_side(server_port: int) -> list[tuple[int, int]]:
    """(client port, socket inode) of each established TCP connection to ``server_port``."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and state == "01":  # 01: ESTABLISHED
            found.append((int(remote.split(":")[1], 16), inode))
    return found


def worker_pids(master: int) -> list[int]:
    """The worker processes of the gunicorn master ``master``."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def connections_by_worker(pids: list[int], server_port: int) -> list[int]:
    """How many established connections to ``server_port`` each of ``pids`` holds."""
    owners = socket_owners(pids)
    held = [owners.get(inode) for _, inode in server_side(server_port)]
    return [held.count(pid) for pid in pids]


class LiveServer:
    """The service under gunicorn, started with the README's command on a free port."""

    def __init__(self, log_path: Path, workers: int = 2, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {**os.environ, "SENTIMENT_CLF_PORT": str(self.port),
                       "SENTIMENT_CLF_WORKERS": str(workers), **(env or {})}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [gunicorn_path(), "--chdir", "sentiment-clf", "app:create_app()"],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:  # not listening or not answering yet
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return worker_pids(self.process.pid)

    def kill(self) -> None:
        """SIGKILL to the master and its workers at once: a machine or container lost."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is not None:  # killed, or exited by itself
            self._log.close()
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def replica_env(database_url: str, redis_url: str) -> dict:
    """What each replica behind a balancer is given: the shared database and Redis, the
    balancer as a trusted proxy, one secret for the page's tokens, and limits out of a
    load test's way."""
    return {"DATABASE_URL": database_url, "SENTIMENT_CLF_RATELIMIT_STORAGE_URI": redis_url,
            "SENTIMENT_CLF_PREDICT_RATE_LIMIT": "100000 per second",
            "SENTIMENT_CLF_FEEDBACK_RATE_LIMIT": "100000 per minute",
            "SENTIMENT_CLF_TRUSTED_PROXIES": "127.0.0.1",
            "SENTIMENT_CLF_SECRET_KEY": "replicas-share-this-secret"}


MIXED_TEXTS = ["that movie was boring", "a gorgeous , witty , seductive movie .", "a dull , lifeless film",
               "the best film of the year", "an uneven but rewarding experience"]


def mixed_load(url: str, seconds: float, clients: int = 16, feedback_share: float = 0.3) -> dict:
    """``clients`` threads sending predictions and answers (``feedback_share`` of the
    requests; each with an Idempotency-Key and a client address of its own) to ``url`` for
    ``seconds``. Returns ``outcomes`` (a Counter of "predict 200", "feedback 201", ...,
    and "<kind> error at <s> s: <exception>") and ``acknowledged`` (the ids of the answers
    stored)."""
    outcomes: collections.Counter = collections.Counter()
    acknowledged: list[int] = []
    lock = threading.Lock()
    started = time.monotonic()

    def client(number: int) -> None:
        session = requests.Session()
        rng = random.Random(number)
        while time.monotonic() - started < seconds:
            text = f"{rng.choice(MIXED_TEXTS)} (client {number}, {uuid.uuid4().hex[:6]})"
            kind = "feedback" if rng.random() < feedback_share else "predict"
            try:
                if kind == "feedback":
                    response = session.post(f"{url}/feedback", timeout=15,
                                            json={"model": "sentiment", "query": text, "label": "Positive"},
                                            headers={"Idempotency-Key": uuid.uuid4().hex,
                                                     "X-Forwarded-For": f"10.0.0.{number}"})
                else:
                    response = session.get(url, params={"query": text}, timeout=15)
            except requests.RequestException as exc:
                with lock:
                    outcomes[f"{kind} error at {time.monotonic() - started:.2f} s: {exc}"] += 1
                continue
            with lock:
                outcomes[f"{kind} {response.status_code}"] += 1
                if kind == "feedback" and response.status_code == 201:
                    acknowledged.append(response.json()["id"])

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"outcomes": outcomes, "acknowledged": acknowledged}


class Balancer:
    """HAProxy with the documented configuration (deploy/haproxy.cfg) in front of replicas
    on these ports, on a free port of its own."""

    def __init__(self, log_path: Path, replica_ports: list[int]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SENTIMENT_CLF_LB": f"127.0.0.1:{self.port}",
               **{f"SENTIMENT_CLF_REPLICA_{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(replica_ports)}}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen([shutil.which("haproxy") or "haproxy", "-db", "-f",
                                         str(ROOT / "deploy" / "haproxy.cfg")],
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def replica_topology(folder: Path, database_url: str, redis_url: str, count: int = 3, workers: int = 2):
    """``count`` replicas (each a gunicorn with ``workers``) on one database and one Redis,
    behind HAProxy with the documented configuration, all ready; stopped on the way out.
    Yields a dict: ``replicas``, ``balancer``, ``env``, ``ports``."""
    env = replica_env(database_url, redis_url)
    ports = [free_port() for _ in range(count)]
    replicas = [LiveServer(folder / f"replica{i}.log", workers=workers, env=env, port=port)
                for i, port in enumerate(ports)]
    balancer = None
    try:
        for replica in replicas:
            replica.wait_ready()
        balancer = Balancer(folder / "haproxy.log", ports)
        wait_until(lambda: requests.get(f"{balancer.url}/ready", timeout=2).ok, timeout=30)
        yield {"replicas": replicas, "balancer": balancer, "env": env, "ports": ports}
    finally:
        if balancer:
            balancer.stop()
        for replica in replicas:
            replica.stop()


class AnswerCounter:
    """Counts the answers arriving on ``sock`` (HTTP/1.1 status lines), from a thread,
    until ``expected`` have come or the server closes; ``answered`` is the count so far."""

    def __init__(self, sock: socket.socket, expected: int):
        self.answered = 0
        self._sock, self._expected = sock, expected
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        tail = b""
        while self.answered < self._expected:
            data = self._sock.recv(1 << 16)
            if not data:
                return
            self.answered += (tail + data).count(b"HTTP/1.1 ")
            tail = data[-8:]  # a status line split between two reads is counted once

    def wait_for_first(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.answered == 0 and time.monotonic() < deadline:
            time.sleep(0.001)

    def join(self, timeout: float = 60) -> int:
        self._thread.join(timeout)
        return self.answered


def seconds_until_closed(sock: socket.socket, limit: float = 30, dribble: bytes = b"",
                         interval: float = 0.2) -> float:
    """Seconds until the server closes ``sock`` (at most ``limit``); meanwhile sends
    ``dribble`` one byte every ``interval`` seconds, as a slowloris client does."""
    started = time.monotonic()
    sock.settimeout(interval)
    sent = 0
    while time.monotonic() - started < limit:
        if sent < len(dribble):
            try:
                sock.send(dribble[sent:sent + 1])
                sent += 1
            except OSError:
                break
        try:
            if not sock.recv(65536):
                break
        except TimeoutError:
            continue
        except OSError:
            break
    return time.monotonic() - started


class Forwarder:
    """A TCP forwarder between the service and its database, for faults a real server does
    not make on demand: ``hang()`` keeps every socket open and passes no byte either way
    (a hung server, a partition: the kernel still acknowledges, so TCP notices nothing);
    ``cut()`` closes every connection and refuses new ones (a stopped server);
    ``resume()`` forwards again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            self._flowing.wait()
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            self._flowing.wait()  # a hang that began meanwhile holds this chunk too
            try:
                sink.sendall(data)
            except OSError:
                break
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def hang(self) -> None:
        self._flowing.clear()

    def cut(self) -> None:
        self._refusing = True
        with self._lock:
            held, self._sockets = self._sockets, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def resume(self) -> None:
        self._refusing = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.resume()
        self.cut()
        self._listener.close()


# -- servers the benchmarks start ----------------------------------------------------

def wait_until(check, timeout=120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not answer in time")


def start_gunicorn(app: str, port: int, workers: int, folder: Path, config: Path | None = None):
    """gunicorn from the repository root, with its gunicorn.conf.py (or ``config``): the
    README's command for the service, and the same for an app of the benchmarks' (such as
    ``bench.constant_app``, found from the root, where gunicorn runs)."""
    env = {**os.environ, "SENTIMENT_CLF_PORT": str(port), "SENTIMENT_CLF_WORKERS": str(workers),
           "SENTIMENT_CLF_DATA_DIR": str(folder), "SENTIMENT_CLF_ACCESS_LOG": "true"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), app] if app.startswith("bench.") else [str(gunicorn), "--chdir", "sentiment-clf", app]
    if config is not None:
        command[1:1] = ["--config", str(config)]
    return subprocess.Popen(command, cwd=ROOT, env=env,
                            stdout=(folder / f"{port}.log").open("wb"), stderr=subprocess.STDOUT)


def stop_gunicorn(process) -> None:
    process.terminate()
    process.wait(30)


def stop_group(process) -> None:
    """MLServer and its parallel workers: SIGTERM to the group, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# -- wrk rounds -----------------------------------------------------------------------

def post_script(path: Path, body: dict) -> Path:
    """A wrk script that POSTs ``body`` as JSON."""
    path.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(json.dumps(body))}\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}  # to milliseconds


def _find(pattern: str, output: str, flags: int = 0) -> re.Match[str]:
    """``pattern`` in wrk's ``output``, which must have it."""
    match = re.search(pattern, output, flags)
    if match is None:
        raise RuntimeError(f"wrk's output has no {pattern!r}:\n{output}")
    return match


def run_wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> dict:
    """One wrk run (1 thread): requests, requests/s, p50/p99 latency and errors."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[-1:-1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def latency(percent):
        value, unit = _find(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * _UNITS[unit]

    requests, elapsed, unit = _find(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", output).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {"connections": connections, "seconds": seconds,
            "requests": int(requests), "elapsed_s": float(elapsed) * _UNITS[unit] / 1e3,
            "requests_per_s": float(_find(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50_ms": latency(50), "p90_ms": latency(90), "p99_ms": latency(99),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "none"}


def run_wrk_batch(url: str, texts: list[str], connections: int, seconds: int, folder: Path) -> dict:
    """wrk POSTing ``{"queries": texts}`` to a batch endpoint: requests/s and phrases/s."""
    script = post_script(folder / "batch.lua", {"queries": texts})
    run = run_wrk(url, connections, seconds, script)
    return {"batch_size": len(texts), "connections": connections, "requests_per_s": run["requests_per_s"],
            "phrases_per_s": run["requests_per_s"] * len(texts), "non_2xx": run["non_2xx"]}


def measure_in_rounds(targets: dict, seconds: int, rounds: int, concurrency: list[int]) -> list[dict]:
    """``targets``: name -> (url, wrk script or None). Each concurrency: ``rounds``
    rounds of seconds/rounds per target, the targets in turn."""
    runs = []
    for c in concurrency:
        per_round: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (url, script) in targets.items():
                per_round[name].append(run_wrk(url, c, max(1, round(seconds / rounds)), script))
        for name, results in per_round.items():
            runs.append({"server": name, "connections": c, "rounds": len(results), **combine_rounds(results),
                         "non_2xx": sum(r["non_2xx"] for r in results)})
    return runs


def combine_rounds(runs: list[dict], percentiles: tuple[int, ...] = (50, 99)) -> dict:
    """wrk runs of one target taken in rounds, as one: requests/s over all of them, and
    the median of the rounds' latency at each of ``percentiles``."""
    return {"requests_per_s": sum(r["requests"] for r in runs) / sum(r["elapsed_s"] for r in runs),
            **{f"p{p}_ms": statistics.median(r[f"p{p}_ms"] for r in runs) for p in percentiles}}


# -- memory ---------------------------------------------------------------------------

def memory_kib(pid: int) -> dict[str, int]:
    """A process's memory from /proc/<pid>/smaps_rollup, in KiB: RSS, PSS, private (the
    pages only it holds, clean and dirty) and shared."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        fields[name.rstrip(":")] = int(value)
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "shared": fields["Shared_Clean"] + fields["Shared_Dirty"]}


def worker_rss_kib(master_pid: int) -> dict[int, int]:
    """RSS of each gunicorn worker (the master's children), in KiB."""
    sizes = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != master_pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError):
            continue
        sizes[int(stat.parent.name)] = int(next(line.split()[1] for line in status.splitlines()
                                                 if line.startswith("VmRSS:")))
    return sizes


# -- results files --------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def save_results(filename: str, results: dict) -> None:
    """Write ``results`` as JSON to bench/results/``filename`` (ignored by git)."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / filename).write_text(json.dumps(results, indent=2, default=list) + "\n")
