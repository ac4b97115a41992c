"""The container, built from the repository's Dockerfile and run: as a non-root user, with
a read-only root file system and a volume for the SQLite data, both tiers answering, a
health check, a clean stop on SIGTERM, and feedback still there after a restart.

Built with podman where no registry is reachable: the base image comes from Debian's
packages (mmdebstrap) and the build context is `make wheelhouse`'s, so nothing is pulled
or downloaded inside the build."""
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from bench.harness import free_port, wait_until
from sentiment_clf import Classifier

from conftest import ARTIFACTS, MODELS_DIR, ROOT, building, need

BASE = "localhost/sentiment-clf-base:bookworm"
TEXT = "that movie was boring"


class Podman:
    """podman as it runs here: runc (crun fails on some kernels' cgroups), cgroupfs, host
    network, and no default rlimits (setting them may be refused)."""

    def __init__(self, folder: Path):
        self.conf = folder / "containers.conf"
        self.conf.write_text("[containers]\ndefault_ulimits = []\n")

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", *args],
                              env={**os.environ, "CONTAINERS_CONF": str(self.conf)}, capture_output=True, text=True,
                              timeout=timeout)
        assert not check or done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-2000:]}"
        return done


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Podman:
    need(all(shutil.which(tool) for tool in ("podman", "runc", "mmdebstrap")),
         "the container test needs podman, runc and mmdebstrap (Debian: apt-get install podman runc mmdebstrap)")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(podman, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("image")
    if podman("image", "exists", BASE, check=False).returncode != 0:
        # Debian's Python 3.11 with venv: what the official slim image gives, from packages
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(folder / "base.tar")], check=True, capture_output=True, timeout=600)
        podman("import", str(folder / "base.tar"), BASE)
    context = folder / "context"
    context.mkdir()
    shutil.copy(ROOT / ".dockerignore", context)
    with building():
        made = subprocess.run(["make", "-C", str(ROOT), "wheelhouse", f"WHEELHOUSE={context / 'dist' / 'wheels'}"],
                              capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    tag = f"localhost/sentiment-clf:test-{uuid.uuid4().hex[:8]}"
    podman("build", "--quiet", "--format", "docker", "--network", "host", "--build-arg", f"BASE={BASE}",
           "-f", str(ROOT / "Dockerfile"), "-t", tag, str(context))
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_image_holds_the_service_alone(podman, image):
    [inspected] = json.loads(podman("image", "inspect", image).stdout)
    config = inspected["Config"]
    assert config["User"] == "10001" and config["Cmd"] == ["sentiment-clf", "serve"]
    assert "/data" in config["Volumes"] and "/ready" in inspected["Healthcheck"]["Test"][-1]
    found = podman("run", "--rm", "--network", "host", image, "python3", "-c",
                   "import sentiment_clf, os, pathlib; p = pathlib.Path(sentiment_clf.__file__).parent;"
                   "print(p, sorted(os.listdir('/opt/sentiment-clf')), (p / 'models' / 'accurate').is_dir(),"
                   " [d for d in ('/tests', '/bench', '/.git', '/app', '/wheels') if os.path.exists(d)])")
    package, rest = found.stdout.split(" ", 1)
    assert package.startswith("/opt/sentiment-clf/lib/python3.11/site-packages/")
    assert rest.strip() == "['bin', 'include', 'lib', 'lib64', 'pyvenv.cfg'] True []"


def test_the_container_serves_keeps_feedback_across_a_restart_and_stops_cleanly(podman, image):
    port = free_port()
    name, volume = f"sentiment-clf-{uuid.uuid4().hex[:8]}", f"sentiment-clf-data-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"
    launched = time.monotonic()
    podman("run", "--detach", "--name", name, "--network", "host", "--read-only", "--read-only-tmpfs=false",
           "--tmpfs", "/tmp", "--volume", f"{volume}:/data", "--health-interval", "disable",
           "--env", f"SENTIMENT_CLF_PORT={port}", "--env", "SENTIMENT_CLF_HOST=127.0.0.1", image)
    try:
        wait_until(lambda: requests.get(f"{url}/ready", timeout=2).status_code == 200, timeout=90)
        first_ready = time.monotonic() - launched
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's own check
        checkout = Classifier.load(MODELS_DIR)
        for variant in ("fast", "accurate"):
            answer = requests.get(url, params={"query": TEXT, "variant": variant}, timeout=30)
            assert answer.json() == json.loads(json.dumps(checkout.predict([TEXT], variant=variant)[0]))
        posted = requests.post(f"{url}/feedback", json={"model": "sentiment", "query": TEXT, "label": "Negative"},
                               timeout=10)
        assert posted.status_code == 201, posted.text
        # the root file system is read-only: only /data and /tmp take writes
        assert podman("exec", name, "touch", "/opt/sentiment-clf/x", check=False).returncode != 0

        podman("stop", "--time", "30", name)  # SIGTERM
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"]
        assert "Shutting down: Master" in podman("logs", name).stderr

        restarted = time.monotonic()
        podman("start", name)
        wait_until(lambda: requests.get(f"{url}/ready", timeout=2).status_code == 200, timeout=90)
        ready_again = time.monotonic() - restarted
        models = {(m["name"], m["variant"]): m for m in requests.get(f"{url}/models", timeout=10).json()["models"]}
        assert models["sentiment", "fast"]["feedback_stored"] == 1
        [inspected] = json.loads(podman("image", "inspect", image).stdout)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "container.json").write_text(json.dumps({
            "image_bytes": inspected["Size"], "seconds_to_ready": round(first_ready, 2),
            "seconds_to_ready_after_restart": round(ready_again, 2)}, indent=1))
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)
