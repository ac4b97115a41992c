"""The ``sentiment-clf`` command: serve, keys, versions, settings, and the training
commands (the same code as a checkout's ``build_model.py``, where the training libraries are installed).

    sentiment-clf serve --port 8000
    sentiment-clf versions --model sentiment
    sentiment-clf rollback sentiment
    sentiment-clf new-key mobile-app
    sentiment-clf config
    sentiment-clf train --data-dir lib/data/sst
    sentiment-clf predict reviews.csv --column text --variant accurate -o scored.parquet

Exit codes: 0 done; 1 nothing to do (no version to roll back to); 2 a bad argument or
setting; 3 a retrained model was not published; 4 the command needs libraries that are
not installed (the message says which extra brings them).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sentiment_clf.config import PREFIX, Settings, unknown_variables, variable
from sentiment_clf.tasks import endpoint_models
from sentiment_clf.versions import roll_back, version_lines

GUNICORN_CONFIG = "python:sentiment_clf.server.gunicorn_config"
TRAINING_COMMANDS = ("train", "finetune", "retrain")
NEEDS = {"train": "train", "retrain": "train", "finetune": "finetune"}  # the extra each needs


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Text classifiers over a JSON REST API: sentiment, ratings, hate speech, question types."""


@main.command()
@click.option("--host", help="address to bind (default: SENTIMENT_CLF_HOST, 127.0.0.1)")
@click.option("--port", type=click.IntRange(1, 65535), help="port (default: SENTIMENT_CLF_PORT, 5000)")
@click.option("--workers", type=click.IntRange(1, 64), help="worker processes (default: SENTIMENT_CLF_WORKERS, 2)")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn and the project's settings (gevent workers, both tiers)."""
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[PREFIX + name] = str(value)
    problems = unknown_variables()
    if problems:
        raise click.UsageError("; ".join(problems))
    try:
        Settings()
    except ValueError as exc:
        raise click.UsageError(_problem(exc)) from None
    # gunicorn replaces this process: its signals (SIGTERM, SIGHUP) reach gunicorn itself.
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG,
                              "sentiment_clf.app:create_app()"])


@main.command("new-key")
@click.argument("name")
def new_key(name: str) -> None:
    """Print a new API key for the client NAME and its TRUSTED_API_KEYS entry."""
    from sentiment_clf.feedback import new_key as make

    try:
        key, entry = make(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    # The key goes to the operator's terminal, never to a log.
    click.echo(f"API key (give it to the client; it is not stored anywhere): {key}")
    click.echo(f"TRUSTED_API_KEYS entry (add it, comma-separated): {entry}")
    click.echo(f"for example: export SENTIMENT_CLF_TRUSTED_API_KEYS='{entry}'")


@main.command()
def config() -> None:
    """Print the effective settings (from the environment) and any SENTIMENT_CLF_ variable
    that is no setting; exit 2 if there is one, or if a setting's value is refused."""
    problems = unknown_variables()
    try:
        settings = Settings()
    except ValueError as exc:
        problems.append(_problem(exc))
        settings = None
    if settings is not None:
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            shown = "(set)" if name == "secret_key" and value else value
            click.echo(f"{variable(name)}={'' if shown is None else shown}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(2)


@main.command()
@click.option("--model", "models", multiple=True, help="a model (repeat for several; default: every one)")
@click.option("--variant", type=click.Choice(["fast", "accurate"]), default="fast", show_default=True,
              help="the fast models, or the accurate tier's heads")
@click.option("--database-url", help="default: the service's database (DATABASE_URL, or SQLite in the data dir)")
def versions(models: tuple[str, ...], variant: str, database_url: str | None) -> None:
    """List each model's published versions; the one serving is marked with *."""
    from sentiment_clf.tasks import MODELS

    for name in models:
        _known_model(name, "--model")
    storage = _storage(database_url)
    try:
        for line in version_lines(storage, list(models) or list(MODELS), variant):
            click.echo(line)
    finally:
        storage.dispose()


@main.command()
@click.argument("model")
@click.option("--variant", type=click.Choice(["fast", "accurate"]), default="fast", show_default=True)
@click.option("--database-url", help="default: the service's database (DATABASE_URL, or SQLite in the data dir)")
def rollback(model: str, variant: str, database_url: str | None) -> None:
    """Serve MODEL's version served before the current one (exit 1 if the base model serves)."""
    _known_model(model, "MODEL")
    storage = _storage(database_url)
    try:
        code, line = roll_back(storage, model, variant)
    finally:
        storage.dispose()
    click.echo(line)
    sys.exit(code)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="where the scored rows go: .csv, .jsonl, .parquet or .txt")
@click.option("--column", default="text", show_default=True, help="the column holding the texts")
@click.option("--model", type=click.Choice([spec.name for spec in endpoint_models()]), default="sentiment",
              show_default=True)
@click.option("--variant", type=click.Choice(["fast", "accurate"]), default="fast", show_default=True)
@click.option("--chunk-size", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="rows read, scored and written at a time (the memory a chunk takes)")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="score here, or on a Dask cluster")
@click.option("--scheduler", help="the Dask scheduler's address (tcp://HOST:PORT); none: a local cluster")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), help="default: the packaged models")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def predict(input_path: Path, output: Path, column: str, model: str, variant: str, chunk_size: int, engine: str,
            scheduler: str | None, models_dir: Path | None, no_progress: bool) -> None:
    """Score the texts of INPUT (.csv, .jsonl, .parquet, or .txt: one text a line) into OUTPUT:
    every input column kept, the answer's added. A rerun after an interruption resumes."""
    try:
        from sentiment_clf import scoring
    except ImportError as exc:
        click.echo(f"sentiment-clf predict needs pandas ({exc.name} is missing): "
                   "pip install 'sentiment-clf[train]'", err=True)
        sys.exit(4)
    try:
        job = scoring.Job(input_path, output, column, model, variant, chunk_size, models_dir,
                          Settings().max_query_chars)
        summary = scoring.run(job, engine, scheduler, progress=not no_progress)
    except ImportError as exc:
        extra = "dask" if exc.name in ("dask", "distributed") else "train"
        click.echo(f"sentiment-clf predict needs {exc.name}, which is missing: pip install 'sentiment-clf[{extra}]'",
                   err=True)
        sys.exit(4)
    except (scoring.ScoringError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    for line in summary.lines():
        click.echo(line)


_TRAINING_HELP = {"train": "Train, evaluate and save the fast models, with reports",
                  "finetune": "Fine-tune the accurate tier (a transformer, on CPU)",
                  "retrain": "Retrain with the stored feedback and publish if not worse"}


def _training_command(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   add_help_option=False, help=f"{_TRAINING_HELP[name]} (needs the '{NEEDS[name]}' extra; "
                   f"'sentiment-clf {name} --help' lists its options).")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        try:
            from sentiment_clf.training import build
        except ImportError as exc:
            click.echo(f"sentiment-clf {name} needs the training libraries ({exc.name} is missing): "
                       f"pip install 'sentiment-clf[{NEEDS[name]}]'", err=True)
            sys.exit(4)
        sys.exit(build.main([name, *args], prog="sentiment-clf"))

    return run


for _name in TRAINING_COMMANDS:
    main.add_command(_training_command(_name))


def _known_model(name: str, hint: str) -> None:
    from sentiment_clf.tasks import MODELS

    if name not in MODELS:
        raise click.BadParameter(f"no model {name!r} (models: {', '.join(MODELS)})", param_hint=hint)


def _storage(database_url: str | None):
    from sentiment_clf.feedback import Storage

    try:
        url = database_url or Settings().database()
    except ValueError as exc:
        raise click.UsageError(_problem(exc)) from None
    return Storage(url, timeout=30.0)


def _problem(exc: Exception) -> str:
    """A refused setting in one line: the variable and why."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        return f"{variable(str(first['loc'][0]))}: {first['msg']}" if first.get("loc") else first["msg"]
    return (str(exc).splitlines() or [""])[0]


if __name__ == "__main__":
    main()
