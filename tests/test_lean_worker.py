"""A real gunicorn worker carries only what serving needs.

After answering every kind of request (predictions with explanations, batches,
feedback, the page, the docs, metrics), on both tiers, no worker has loaded pandas,
scikit-learn, scipy, matplotlib, torch, transformers or onnx (the accurate tier runs
on onnxruntime and tokenizers): each of them maps compiled extensions of its own
when imported, so a worker's memory map shows whether it did. The model
arrays are mapped from the model files, shared by the workers.
"""
import subprocess
import sys
from pathlib import Path

import requests

from conftest import MODELS_DIR, ROOT

TRAINING_LIBRARIES = ("pandas", "sklearn", "scipy", "matplotlib", "torch", "transformers", "onnx")


def test_workers_load_no_training_library(live_server):
    url = live_server.url
    for _ in range(4):  # enough requests for both workers
        assert requests.get(f"{url}/", params={"query": "a dull film", "explain": "1"}, timeout=10).ok
        assert requests.post(f"{url}/questions/batch", json={"queries": ["what is it ?"], "explain": True},
                             timeout=10).ok
        assert requests.get(f"{url}/questions", params={"query": "what is it ?", "variant": "accurate",
                                                        "explain": "1"}, timeout=10).ok
        assert requests.post(f"{url}/hatespeech/batch", json={"queries": ["a fine day"], "variant": "accurate"},
                             timeout=10).ok
        assert requests.post(f"{url}/feedback", json={"model": "sentiment", "query": "a fine film",
                                                      "label": "Positive"}, timeout=10).status_code == 201
        for page in ("/ui", "/docs", "/metrics", "/models", "/openapi.json", "/ready"):
            assert requests.get(f"{url}{page}", timeout=10).ok, page
    pids = live_server.worker_pids()
    assert len(pids) == 2
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        loaded = [name for name in TRAINING_LIBRARIES if f"/site-packages/{name}/" in maps]
        assert loaded == [], f"worker {pid} loaded {loaded}"
        assert "/site-packages/numpy/" in maps  # the check itself sees extensions
        mapped_models = {line.split()[-1] for line in maps.splitlines() if line.endswith("model.npz")}
        assert mapped_models == {str(path) for path in MODELS_DIR.glob("*/model.npz")}


def test_importing_the_app_imports_no_training_library():
    """The same in a fresh interpreter, pure-Python modules included."""
    code = ("import sys; from sentiment_clf.app import create_app; create_app({'DATABASE_URL': 'sqlite://'}); "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_LIBRARIES!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
