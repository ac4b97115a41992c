"""Scoring a file in bulk (``sentiment-clf predict``): every format in and out, bad rows
kept and reported, an interrupted run resumed, and a Dask cluster of two worker
processes writing what the local engine writes."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from sentiment_clf import Classifier
from sentiment_clf.cli import main
from sentiment_clf.scoring import Job, ScoringError, run

TEXTS = ["that movie was boring", "a gorgeous , witty and moving film", "What is the capital of Peru?",
         "  padded on both sides  ", "RT @user: you are a wonderful person http://t.co/x"]
BAD = {"": "empty", "   ": "empty", "x" * 10_001: "too long"}


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(accurate=False)


def frame(rows: int = 120) -> pd.DataFrame:
    texts = [*TEXTS, *BAD]
    return pd.DataFrame({"id": [str(i) for i in range(rows)], "text": [texts[i % len(texts)] for i in range(rows)],
                         "note": [f"row {i}" for i in range(rows)]})


def write(data: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        data.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        data.to_json(path, orient="records", lines=True)
    elif path.suffix == ".parquet":
        data.to_parquet(path, index=False)
    else:
        path.write_text("".join(f"{text}\n" for text in data["text"]), encoding="utf-8")


def read(path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    rows = [line.split("\t", 3) for line in path.read_text(encoding="utf-8").splitlines()]
    return pd.DataFrame(rows, columns=["prediction", "confidence", "error", "text"])


def expected(classifier, texts: list[str]) -> list[str]:
    return [answer["prediction"] for answer in classifier.predict([t.strip() for t in texts], "ratings")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt"])
def test_every_input_format_is_read_and_every_row_kept(tmp_path, classifier, suffix):
    data = frame()
    write(data, tmp_path / f"in{suffix}")
    summary = run(Job(tmp_path / f"in{suffix}", tmp_path / "out.parquet", model="ratings", chunk_size=32),
                  progress=False)
    found = pd.read_parquet(tmp_path / "out.parquet")
    assert len(found) == len(data) and summary.rows == len(data) and summary.chunks == 4
    if suffix != ".txt":
        assert list(found.columns[:3]) == ["id", "text", "note"] and found["note"].tolist() == data["note"].tolist()
    good = found["error"] == ""
    assert found.loc[good, "prediction"].tolist() == expected(classifier, found.loc[good, "text"].tolist())
    assert set(found.columns) >= {"confidence", "p_negative", "p_positive", "version", "variant"}
    assert sorted(found.loc[~good, "error"].unique()) == ["empty", "too long"]
    assert found.loc[~good, "prediction"].isna().all()
    assert summary.scored == int(good.sum()) and sum(summary.bad.values()) == int((~good).sum())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt"])
def test_every_output_format_is_written(tmp_path, classifier, suffix):
    data = frame(40)
    write(data, tmp_path / "in.csv")
    run(Job(tmp_path / "in.csv", tmp_path / f"out{suffix}", model="ratings", chunk_size=16), progress=False)
    found = read(tmp_path / f"out{suffix}")
    assert len(found) == len(data) and not (tmp_path / f"out{suffix}.parts").exists()
    good = found["error"] == ""
    assert found.loc[good, "prediction"].tolist() == expected(classifier, data.loc[good.values, "text"].tolist())


def test_a_missing_text_is_reported_not_fatal(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "a fine film"}\n{"text": null}\n{"other": 1}\n', encoding="utf-8")
    summary = run(Job(tmp_path / "in.jsonl", tmp_path / "out.jsonl"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["error"] for row in rows] == ["", "missing", "missing"]
    assert summary.lines()[1] == "2 rows not scored (missing: 2); first rows: 2, 3"


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    from sentiment_clf import scoring

    write(frame(200), tmp_path / "in.csv")
    job = Job(tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=50)
    score = scoring.score_chunk
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        return score(*args)

    monkeypatch.setattr(scoring, "score_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(job, progress=False)
    assert sorted(p.name for p in job.parts.glob("part-*")) == ["part-000000.parquet", "part-000001.parquet"]
    monkeypatch.setattr(scoring, "score_chunk", score)
    summary = run(job, progress=False)
    assert (summary.resumed, summary.chunks, summary.rows) == (2, 4, 200)
    run(Job(tmp_path / "in.csv", tmp_path / "fresh.csv", chunk_size=50), progress=False)
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "fresh.csv").read_bytes()


def test_another_jobs_parts_are_not_taken_for_this_ones(tmp_path):
    write(frame(20), tmp_path / "in.csv")
    Job(tmp_path / "in.csv", tmp_path / "out.csv").parts.mkdir()
    (Job(tmp_path / "in.csv", tmp_path / "out.csv").parts / "job.json").write_text('{"model": "other"}')
    with pytest.raises(ScoringError, match="holds the parts of another job"):
        run(Job(tmp_path / "in.csv", tmp_path / "out.csv"), progress=False)


@pytest.mark.parametrize("args, message", [
    (["--column", "review"], "no column 'review'; its columns are id, text, note"),
    (["-o", "out.xlsx"], "the format is read from the extension"),
    (["--model", "questions-fine"], "Invalid value for '--model'"),
])
def test_the_command_names_what_is_wrong_in_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write(frame(10), tmp_path / "in.csv")
    result = CliRunner().invoke(main, ["predict", "in.csv", "-o", "out.csv", "--no-progress", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_command_prints_its_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(frame(30), tmp_path / "in.csv")
    result = CliRunner().invoke(main, ["predict", "in.csv", "-o", "out.parquet", "--model", "hatespeech",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    good = sum(1 for text in frame(30)["text"] if text.strip() and len(text) <= 10_000)
    assert result.output.startswith(f"30 rows, {good} scored in ")
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 30


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # distributed's own sockets, closed after the test's
def test_a_dask_cluster_of_two_worker_processes_writes_what_the_local_engine_writes(tmp_path):
    pytest.importorskip("distributed", reason="dask is not installed (requirements-test.txt)")
    write(frame(300), tmp_path / "in.csv")
    for variant in ("fast", "accurate"):
        local = run(Job(tmp_path / "in.csv", tmp_path / f"local-{variant}.csv", model="questions", variant=variant,
                        chunk_size=40), progress=False)
        on_dask = run(Job(tmp_path / "in.csv", tmp_path / f"dask-{variant}.csv", model="questions",
                          variant=variant, chunk_size=40), engine="dask", progress=False)
        good = sum(1 for text in frame(300)["text"] if text.strip() and len(text) <= 10_000)
        assert (local.rows, local.scored) == (on_dask.rows, on_dask.scored) == (300, good)
        assert (tmp_path / f"local-{variant}.csv").read_bytes() == (tmp_path / f"dask-{variant}.csv").read_bytes()
