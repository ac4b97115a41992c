"""The code's shape, as the README's Layout section promises it: no import cycles,
the model layer never imports the HTTP layer, serving never imports training code,
and nothing changes sys.path. (Modules are split by what they hold, not by length.)"""
import ast
from pathlib import Path

from conftest import APP_DIR, ROOT

MODEL_LAYER = ["sentiment_clf.linear_model", "sentiment_clf.vocabulary", "sentiment_clf.classifiers",
               "sentiment_clf.model_files", "sentiment_clf.text", "model"]
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
