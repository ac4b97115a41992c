"""The documentation cannot go stale: ``mkdocs build --strict`` builds the site, and every
command and code example in it (and in the README) is run against a real server and its
output compared.

What a fenced block is, by its language:

- ``console``: ``$ `` starts a command (a line ending in ``\\`` or inside an open quote
  goes on); the lines up to the next command are what it prints. ``...`` stands for
  anything (values that change, or left out), and whitespace does not count. What a
  command prints on stdout and stderr counts alike.
- ``pycon``: a Python session (``>>>``), run as a doctest (``...`` elides there too).
- ``python``: a program, run; it must not fail.
- ``sh``: commands this test does not run. An HTML comment right above says why:
  ``<!-- run by tests/test_x.py: ... -->`` (that test runs them) or ``<!-- not run: ... -->``.
- anything else (``json``, ``text``, ``ini``, none): output or configuration, not commands.

Each page's examples run in order against a server of their own (a fresh database), from
a temporary working directory, with this environment's commands on the PATH; the
documented address, ``http://127.0.0.1:5000``, is replaced by the server's.
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.harness import LiveServer

from conftest import ROOT, need

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"(?:^[ ]*<!-- (?P<marker>[^\n]*?) -->\n)?^[ ]*```(?P<lang>[a-z]*)\n(?P<body>.*?)^[ ]*```$",
                   re.S | re.M)
RUN = ("console", "pycon", "python")
NOT_RUN = ("sh", "bash", "shell")
ADDRESSES = ("http://127.0.0.1:5000", "http://localhost:5000", "127.0.0.1:5000", "localhost:5000")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [Block(page, text.count("\n", 0, found.start("lang")) + 1, found["lang"], textwrap.dedent(found["body"]),
                  found["marker"]) for found in FENCE.finditer(text)]


def test_every_command_block_is_run_or_says_why_not():
    unexplained, missing = [], []
    for page in PAGES:
        for block in blocks(page):
            if block.lang not in NOT_RUN and not (block.lang == "python" and block.marker):
                continue
            marker = block.marker or ""
            if marker.startswith("run by "):
                named = re.findall(r"(?:tests/\w+\.py|\.ci/run)", marker)
                missing += [f"{block}: {name}" for name in named if not (ROOT / name).exists()]
                if not named:
                    unexplained.append(str(block))
            elif not marker.startswith("not run: "):
                unexplained.append(str(block))
    assert unexplained == [] and missing == []


def test_the_site_builds_strictly(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").read_text().count("sentiment-clf serve") >= 1


def test_no_page_names_an_issue_a_working_machine_or_a_path_outside_the_repository():
    pattern = re.compile(r"\bissue #?\d+|\bissue's\b|this machine|these (?:two )?cores|\.\./shared|shared/data", re.I)
    found = [f"{page.relative_to(ROOT)}: {m.group()}" for page in PAGES
             for m in pattern.finditer(page.read_text(encoding="utf-8"))]
    assert found == []


def _normalised(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _matches(expected: str, found: str) -> bool:
    parts = [re.escape(part) for part in _normalised(expected).split("...")]
    return re.fullmatch(".*?".join(parts), _normalised(found), re.S) is not None


def _commands(body: str) -> list[tuple[str, str]]:
    """(command, expected output) for each ``$ `` line of a console block."""
    found: list[tuple[str, str]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        i += 1
        while command.endswith("\\") or not _complete(command):
            command += "\n" + lines[i]
            i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        found.append((command, "\n".join(output)))
    return found


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def _here(text: str, url: str) -> str:
    for address in ADDRESSES:
        text = text.replace(address, url if address.startswith("http") else url.removeprefix("http://"))
    return text


RUNNABLE = [page for page in PAGES if any(block.lang in RUN for block in blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_pages_examples_answer_as_written(page, tmp_path):
    need(subprocess.run(["bash", "-c", "command -v curl"], capture_output=True).returncode == 0,
         "the documentation's examples need curl")
    data = tmp_path / "data"
    server = LiveServer(tmp_path / "server.log", workers=2, env={"SENTIMENT_CLF_DATA_DIR": str(data)})
    # curl shows no progress meter in a terminal; here its output is a pipe, so say so
    (tmp_path / ".curlrc").write_text("--silent\n--show-error\n")
    env = {**os.environ, "SENTIMENT_CLF_DATA_DIR": str(data), "CURL_HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "work"
    work.mkdir()
    failures = []
    try:
        server.wait_ready()
        for block in blocks(page):
            if block.lang == "console":
                for command, expected in _commands(block.body):
                    ran = subprocess.run(["bash", "-c", _here(command, server.url)], cwd=work, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
                    if not _matches(_here(expected, server.url), ran.stdout):
                        failures.append(f"{block}: $ {command}\nexpected: {expected}\nfound: {ran.stdout}")
            elif block.lang == "pycon":
                test = doctest.DocTestParser().get_doctest(_here(block.body, server.url), {}, str(block), str(page),
                                                           block.line)
                runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
                output: list[str] = []
                runner.run(test, out=output.append)
                if runner.failures:
                    failures.append(f"{block}:\n{''.join(output)}")
            elif block.lang == "python" and not block.marker:
                ran = subprocess.run([sys.executable, "-c", _here(block.body, server.url)], cwd=work, env=env,
                                     capture_output=True, text=True, timeout=300)
                if ran.returncode != 0:
                    failures.append(f"{block}: {ran.stderr[-1500:]}")
    finally:
        server.stop()
    assert failures == [], "\n\n".join(failures)
