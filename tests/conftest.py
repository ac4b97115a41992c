"""Shared fixtures: the data, the app and its test client, and a real gunicorn server."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import LiveServer, gunicorn_command

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "sentiment-clf"
MODELS_DIR = APP_DIR / "lib" / "models"
SHARED_DATA = Path(os.environ.get("SENTIMENT_CLF_TEST_DATA", ROOT.parent / "shared" / "data"))
# Screenshots and other files for a person to look at after a run.
ARTIFACTS = ROOT / "test-artifacts"
# .ci/run sets this: there, whatever a test needs must be present, so a missing
# piece fails the run instead of skipping.
REQUIRE_ALL = os.environ.get("SENTIMENT_CLF_TEST_REQUIRE_ALL") == "1"


_session_started = [0.0]


def pytest_sessionstart(session):
    ARTIFACTS.mkdir(exist_ok=True)
    _session_started[0] = time.time()


def pytest_terminal_summary(terminalreporter):
    made = sorted(p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= _session_started[0])
    if made:
        terminalreporter.section("screenshots")
        for path in made:
            terminalreporter.write_line(str(path.relative_to(ROOT)))


def need(available, reason: str) -> None:
    """Skip with ``reason`` on a machine without something; fail instead in CI."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (required: SENTIMENT_CLF_TEST_REQUIRE_ALL=1)")
    pytest.skip(reason)


@contextlib.contextmanager
def building() -> Iterator[None]:
    """One ``python -m build`` at a time in this checkout (it writes the egg-info and
    build/ here), whichever test process asks."""
    lock = ROOT / "build" / "tests.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def venv_tool(name: str) -> str | None:
    """A command installed next to this Python (the project's venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


@pytest.fixture(autouse=True)
def _storages_are_closed(monkeypatch):
    """Every Storage a test makes (directly or through an app) is disposed after it.

    Otherwise its pooled connections stay open until garbage collection, which then
    warns (a ResourceWarning, an error here) in whichever test happens to run.
    """
    from sentiment_clf.feedback.store import Storage

    made = []
    make = Storage.__init__

    def init(self, *args, **kwargs):
        make(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Storage, "__init__", init)
    yield
    for storage in made:
        storage.dispose()


@pytest.fixture(scope="session")
def sst_dir() -> Path:
    directory = SHARED_DATA / "sst"
    need((directory / "train.txt").is_file(),
         f"the SST data is not in {directory} (set SENTIMENT_CLF_TEST_DATA)")
    return directory


# Sentences of each split in small_sst: every label, and seconds to build.
SMALL_SST_SENTENCES = 100


@pytest.fixture(scope="session")
def small_sst(sst_dir, tmp_path_factory) -> Path:
    """Every n-th sentence of each SST split, 100 each, in the treebank's layout: for
    tests of what a build or retrain does, not of how good its model is."""
    directory = tmp_path_factory.mktemp("small_sst")
    for split in ("train", "dev", "test"):
        lines = (sst_dir / f"{split}.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        # Spread over the file, which is not in random order.
        kept = lines[::len(lines) // SMALL_SST_SENTENCES][:SMALL_SST_SENTENCES]
        (directory / f"{split}.txt").write_text("".join(kept), encoding="utf-8")
    return directory


def make_app(database_url: str, **config):
    """An app on the committed models (or MODEL_DIR's) and the given database."""
    from app import create_app

    # The page's CSRF check is off here (tests of the page's forms post them directly);
    # test_adversarial_http.py and the browser test check it, on the real server.
    return create_app({"TESTING": True, "MODEL_DIR": MODELS_DIR, "DATABASE_URL": database_url,
                       "FEEDBACK_RATE_LIMIT": "1000 per second", "WTF_CSRF_ENABLED": False, **config})


@pytest.fixture()
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.sqlite'}"


POSTGRES_ADMIN_URL = os.environ.get("SENTIMENT_CLF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def postgresql_url():
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test with
        need(False, f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})")
    name = f"sclf_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


# Tiny models: each served model's kind (classifier, tokenizer, n-grams) fitted on a few
# made-up texts a label, in seconds. The API's plumbing, validation, feedback and errors
# are tested on them; the committed models are tested where they matter (their answers,
# figures and calibration, the golden answers, the accurate tier, the browser).
TINY_TEXTS = {"sentiment": {"Positive": ["a great movie", "wonderful and moving", "an excellent , funny film",
                                         "i loved it", "a good film"],
                            "Negative": ["a boring movie", "dull and tedious", "the worst film , awful",
                                         "i hated it", "a bad film"]}}


def tiny_texts(name: str, labels: tuple[str, ...]) -> tuple[list[str], list[str]]:
    given = TINY_TEXTS.get(name) or {label: [f"{label} {word} example" for word in ("one", "two", "three", "four")]
                                     for label in labels}
    return [text for label in labels for text in given[label]], [label for label in labels for _ in given[label]]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A MODEL_DIR of tiny fast models (no accurate tier), one of each served model's kind."""
    from model import NLPModel
    from sentiment_clf.tasks import MODELS

    folder = tmp_path_factory.mktemp("tiny_models")
    for name, spec in MODELS.items():
        params = json.loads((MODELS_DIR / name / "manifest.json").read_text())["params"]
        params = {**params, "ngram_range": tuple(params["ngram_range"]), "class_prior": None}
        params = {key: value for key, value in params.items()
                  if key in NLPModel().get_params() and (params["classifier"] == "nb" or key != "class_prior")}
        texts, labels = tiny_texts(name, spec.labels)
        NLPModel(spec.labels, **params).fit(texts, labels).save(folder / name, name=name)
    return folder


@pytest.fixture()
def app(sqlite_url, tiny_models):
    """An app on the tiny models (the committed ones: ``served_app``)."""
    return make_app(sqlite_url, MODEL_DIR=tiny_models)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def served_app(sqlite_url):
    """An app on the committed models, both tiers."""
    return make_app(sqlite_url)


@pytest.fixture()
def served_client(served_app):
    return served_app.test_client()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    need(gunicorn_command(), "gunicorn is not installed")
    folder = tmp_path_factory.mktemp("gunicorn")
    server = LiveServer(folder / "server.log", env={"SENTIMENT_CLF_DATA_DIR": str(folder)})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def replace_arrays_file(directory: Path, payload: bytes) -> None:
    """Put ``payload`` in place of a saved model's arrays file, with a manifest whose
    checksum matches it: only the loader's own checks of the content stand in the way."""
    import hashlib
    import json

    (directory / "model.npz").write_bytes(payload)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def write_kaggle_tsv(path, sst_frame):
    """The Kaggle layout: distinct phrases per sentence, the whole sentence first."""
    lines = ["PhraseId\tSentenceId\tPhrase\tSentiment"]
    per_sentence = sst_frame.drop_duplicates(["sentence_id", "phrase"])
    for phrase_id, row in enumerate(per_sentence.itertuples(), start=1):
        lines.append(f"{phrase_id}\t{row.sentence_id}\t{row.phrase}\t{row.label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return per_sentence


ACCURATE_DIR = MODELS_DIR / "accurate"


@pytest.fixture(scope="session")
def accurate_dir() -> Path:
    """The committed accurate tier (``make accurate-model``)."""
    need((ACCURATE_DIR / "manifest.json").is_file(),
         f"no accurate model in {ACCURATE_DIR} (make accurate-model writes it)")
    return ACCURATE_DIR


@pytest.fixture(scope="session")
def accurate_heads(accurate_dir):
    """Every head of the committed accurate tier, sharing one encoder, by model name."""
    from sentiment_clf.serving.accurate import load_accurate

    return load_accurate(accurate_dir)
