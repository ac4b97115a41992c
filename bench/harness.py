"""What the tests and the benchmarks share: the service under gunicorn with the README's
command on a free port (:class:`LiveServer`), the processes and connections of its
workers, a client counting pipelined answers, a slow client, and a TCP forwarder that
makes a database hang or vanish on demand (:class:`Forwarder`).

Both import it as ``bench.harness`` (the tests have the repository's root on their path);
nothing here imports from either.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
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

    def __init__(self, log_path: Path, workers: int = 2, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {**os.environ, "SENTIMENT_CLF_PORT": str(self.port),
                       "SENTIMENT_CLF_WORKERS": str(workers), **(env or {})}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [gunicorn_path(), "--chdir", "sentiment-clf", "app:create_app()"],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT)

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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


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
