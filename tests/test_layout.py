"""The code's shape, as the README's Layout section promises it: no import cycles,
the model layer never imports the HTTP layer, serving never imports training code, no
module imports another's private names, the benchmarks import nothing from the tests,
and nothing changes sys.path. Modules are split by what they hold, not by length: one
over about 500 lines gets a warning, not a failure."""
import ast
import re
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
                # ``from package import module`` depends on the module; a name, on the package
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(known)
                imported |= submodules | ({node.module} if len(submodules) < len(node.names) else set())
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


# -- rooms --------------------------------------------------------------------------
# A room is a sub-package of sentiment_clf; model.py and util.py are training's (the
# estimator and the data loaders it builds on, kept at the checkout's root where users
# look for them); app.py and build_model.py are the entry points; each top-level module
# of the package (config, tasks, errors, trust) stands alone.
ROOMS = ("serving", "feedback", "web", "server", "training")
FRONT_DOORS = {"serving": "sentiment_clf.serving", "feedback": "sentiment_clf.feedback"}


def room(module: str) -> str:
    if module in ("model", "util"):
        return "training"
    parts = module.split(".")
    if parts[0] != "sentiment_clf":
        return module
    if len(parts) > 1 and parts[1] in ROOMS:
        return parts[1]
    return module


def imported_libraries(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return found


def libraries_by_room() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, path in modules().items():
        found.setdefault(room(name), set()).update(imported_libraries(path))
    return found


def test_only_feedback_speaks_sql():
    speaking = {r for r, libraries in libraries_by_room().items() if "sqlalchemy" in libraries}
    assert speaking == {"feedback"}


def test_the_web_holds_no_database_and_no_network():
    assert libraries_by_room()["web"] & {"sqlalchemy", "onnxruntime", "tokenizers"} == set()


def test_serving_knows_no_http_and_no_sql():
    assert libraries_by_room()["serving"] & {"flask", "flask_restful", "werkzeug", "sqlalchemy"} == set()


def test_no_import_cycles_between_rooms():
    graph: dict[str, set[str]] = {}
    for name, imported in import_graph().items():
        graph.setdefault(room(name), set()).update(room(other) for other in imported if room(other) != room(name))
    for node in list(graph):
        graph.setdefault(node, set())
    assert sorted((a, b) for a in graph for b in graph[a] if a in reachable(graph, b)) == []


def test_the_web_and_the_server_enter_the_other_rooms_by_their_front_doors():
    # Training is the exception: it writes the files serving reads, so it works with their parts.
    found = []
    for name, imported in import_graph().items():
        entry_points = ("app", "build_model", "sentiment_clf.app", "sentiment_clf.cli", "sentiment_clf.training.build")
        if room(name) in ("web", "server") or name in entry_points:
            found += [f"{name} -> {other}" for other in imported
                      if room(other) in FRONT_DOORS and room(other) != room(name) and other != FRONT_DOORS[room(other)]]
    assert found == []


def test_the_readme_names_only_modules_that_exist():
    # The Layout, the architecture and the walks of a request name modules; they go stale
    # silently when a module moves (README.md: "Where a request goes").
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
             if not {".venv", ".venv-mlserver", ".venv-mlserver-hf", "build"} & set(p.parts)}
    named = set(re.findall(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.py)\b", readme))
    missing = sorted(name for name in named if not any(f == name or f.endswith("/" + name) for f in files))
    dotted = set(re.findall(r"\bsentiment_clf(?:\.\w+)+", readme)) - {"sentiment_clf.access"}  # a logger
    known = set(modules())
    unknown = sorted(name for name in dotted if not any(name == m or name.startswith(m + ".") and
                                                          _defines(m, name[len(m) + 1:]) for m in known))
    assert (missing, unknown) == ([], [])


def _defines(module: str, attribute: str) -> bool:
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    names |= {target.id for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)}
    names |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    return attribute.split(".")[0] in names


def test_fine_tuning_is_entered_by_its_front_door():
    # The fine-tuning package's modules share helpers that stay inside it.
    inside = "sentiment_clf.training.finetune"
    found = [f"{name} -> {other}" for name, imported in import_graph().items() if not name.startswith(inside)
             for other in imported if other.startswith(inside + ".")]
    for path in python_files("bench"):
        found += [f"{path.name} -> {other}" for other in imported_modules(path) if other.startswith(inside + ".")]
    assert found == []


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_no_module_reaches_into_another_modules_private_names():
    # ``module._name`` through an imported module is the same as importing ``_name``.
    known = set(modules())
    found = []
    for path in [*python_files("sentiment-clf", "bench", "tests"), ROOT / "gunicorn.conf.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                aliases |= {alias.asname or alias.name for alias in node.names
                            if f"{node.module}.{alias.name}" in known}
        found += [f"{path.relative_to(ROOT)}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                  and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert found == []
