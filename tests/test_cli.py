"""The ``sentiment-clf`` command: --help everywhere, one-line errors, exit codes, and the
commands an operator runs where the service runs (no training library needed)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from bench.harness import free_port
from sentiment_clf.cli import main
from sentiment_clf.feedback import Storage, hash_key

from conftest import MODELS_DIR, venv_tool

COMMANDS = ["serve", "predict", "config", "new-key", "versions", "rollback", "train", "finetune", "retrain"]


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_the_command_is_installed_and_lists_its_commands():
    command = venv_tool("sentiment-clf")
    assert command, "the console script is not installed (pip install -e .)"
    found = subprocess.run([command, "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert f"\n  {name} " in found, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = run(name, "--help")
    assert result.exit_code == 0 and "sage" in result.output, result.output


def test_config_prints_the_effective_settings(tmp_path):
    result = run("config", env={"SENTIMENT_CLF_PORT": "8123", "SENTIMENT_CLF_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0
    lines = dict(line.split("=", 1) for line in result.output.splitlines())
    assert lines["SENTIMENT_CLF_PORT"] == "8123" and lines["SENTIMENT_CLF_HOST"] == "127.0.0.1"
    assert lines["SENTIMENT_CLF_DATA_DIR"] == str(tmp_path)


@pytest.mark.parametrize("env, message", [
    ({"SENTIMENT_CLF_WORKR": "3"}, "SENTIMENT_CLF_WORKR is not a setting (did you mean SENTIMENT_CLF_WORKERS?)"),
    ({"SENTIMENT_CLF_PORT": "many"}, "SENTIMENT_CLF_PORT: Input should be a valid integer"),
    ({"SENTIMENT_CLF_CORS_ORIGINS": "app.example.com"}, "SENTIMENT_CLF_CORS_ORIGINS: Value error, CORS_ORIGINS:"),
])
def test_config_names_a_bad_variable_in_one_line_and_exits_2(env, message):
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.output


def test_new_key_prints_a_key_and_its_entry():
    result = run("new-key", "mobile-app")
    assert result.exit_code == 0
    key = result.output.splitlines()[0].rsplit(" ", 1)[1]
    assert f"mobile-app:{hash_key(key)}" in result.output
    refused = CliRunner().invoke(main, ["new-key", "no spaces"])
    assert refused.exit_code == 2 and "a key's name is 1 to 64 letters" in refused.output


def publish_committed(storage: Storage, name: str) -> str:
    manifest = json.loads((MODELS_DIR / name / "manifest.json").read_text())
    manifest = {**manifest, "version": "cafe00000001", "metrics": {"test_accuracy": 0.5}}
    storage.publish(name, manifest, (MODELS_DIR / name / "model.npz").read_bytes(), feedback_upto=0)
    return manifest["version"]


def test_versions_and_rollback_on_the_services_database(sqlite_url):
    storage = Storage(sqlite_url)
    version = publish_committed(storage, "sentiment")
    listed = run("versions", "--model", "sentiment", "--database-url", sqlite_url)
    assert listed.exit_code == 0
    assert listed.output.splitlines() == [
        "sentiment: base model from lib/models",
        f"sentiment: * {version}  {storage.versions('sentiment')[0]['created_at']}  feedback up to id 0  "
        "test accuracy 50.00%"]
    back = run("rollback", "sentiment", "--database-url", sqlite_url)
    assert (back.exit_code, back.output) == (0, "sentiment: now serving the base model shipped in lib/models\n")
    again = run("rollback", "sentiment", "--database-url", sqlite_url)
    assert again.exit_code == 1 and "nothing to roll back" in again.output
    assert CliRunner().invoke(main, ["rollback", "sentimnt"]).exit_code == 2


def test_the_operators_commands_need_no_training_library(sqlite_url):
    code = ("import sys\nfrom sentiment_clf.cli import main\n"
            f"for args in (['versions', '--database-url', {sqlite_url!r}], ['new-key', 'a'], ['config']):\n"
            "    try:\n        main(args)\n    except SystemExit as exit:\n        assert not exit.code, exit.code\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn', 'scipy', 'matplotlib', "
            "'torch', 'flask'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.splitlines()[-1] == "[]"


def test_a_training_command_without_the_training_libraries_says_which_extra_in_one_line():
    code = "import sys\nsys.modules['pandas'] = None\nfrom sentiment_clf.cli import main\nmain(['train'])"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 4
    assert found.stderr.strip() == ("sentiment-clf train needs the training libraries (pandas is missing): "
                                    "pip install 'sentiment-clf[train]'")


def test_serve_answers_and_stops_on_sigterm(tmp_path):
    port = free_port()
    process = subprocess.Popen([venv_tool("sentiment-clf"), "serve", "--port", str(port), "--workers", "1"],
                               env={**os.environ, "SENTIMENT_CLF_DATA_DIR": str(tmp_path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/?query=that movie was boring", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
                time.sleep(0.2)
        assert answer.json()["prediction"] == "Negative"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
