"""The code's shape, as the README's Layout section promises it: no import cycles,
the model layer never imports the HTTP layer, serving never imports training code, no
module imports another's private names, the benchmarks import nothing from the tests,
and nothing changes sys.path. Modules are split by what they hold, not by length: one
over about 500 lines gets a warning, not a failure."""
import ast
import warnings
from pathlib import Path

import pytest

from conftest import APP_DIR, ROOT

MODEL_LAYER = ["sentiment_clf.serving.linear_model", "sentiment_clf.serving.vocabulary",
               "sentiment_clf.serving.classifiers", "sentiment_clf.serving.formats", "sentiment_clf.serving.text",
               "model"]
TRAINING = ("model", "build_model", "util", "sentiment_clf.training")


def modules() -> dict[str, Path]:
    found = {}
    for path in [*APP_DIR.glob("*.py"), *APP_DIR.glob("sentiment_clf/**/*.py")]:
        name = ".".join(path.relative_to(APP_DIR).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for name, path in known.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {other for other in imported if other in known and other != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_no_import_cycles():
    graph = import_graph()
    assert [(a, b) for a in graph for b in graph[a] if a in reachable(graph, b)] == []


def test_the_model_layer_never_imports_the_http_layer():
    graph = import_graph()
    for name in MODEL_LAYER:
        assert {m for m in reachable(graph, name) if m == "app" or m.startswith("sentiment_clf.web")} == set(), name


def test_serving_imports_no_training_code():
    assert {m for m in reachable(import_graph(), "app") if m.startswith(TRAINING)} == set()


def test_nothing_changes_sys_path():
    skipped = {".venv", ".venv-mlserver", ".venv-mlserver-hf", "build"}  # installed packages, build output
    python_files = [p for p in ROOT.rglob("*.py") if not skipped & set(p.parts)]
    assert [str(p) for p in python_files if "sys.path" in p.read_text(encoding="utf-8") and p != Path(__file__)] == []


def python_files(*folders: str) -> list[Path]:
    skipped = {".venv", ".venv-mlserver", ".venv-mlserver-hf", "build"}
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py") if not skipped & set(p.parts)]


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in [*python_files("sentiment-clf", "bench", "tests"), ROOT / "gunicorn.conf.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.relative_to(ROOT)}: {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []


def test_the_benchmarks_import_nothing_from_the_tests():
    found = []
    for path in python_files("bench"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names
                      if name.split(".")[0] in ("tests", "conftest")]
    assert found == []


class LongModule(UserWarning):
    """A module grew past LONG_MODULE lines: worth a look whether it holds one responsibility."""


LONG_MODULE = 500


@pytest.mark.filterwarnings("default::test_layout.LongModule")  # shown in the summary, for a person to look at
def test_a_long_module_is_a_warning_not_a_failure():
    for name, path in modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LONG_MODULE:
            warnings.warn(LongModule(f"{name} has {lines} lines: split it by responsibility if it holds two, "
                                     "never by length"), stacklevel=1)
