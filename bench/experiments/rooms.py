"""The layout's figures: modules, lines and imports per room, and the modules one request walks.

A room is a folder of the ``sentiment_clf`` package; its top-level modules are counted as
the room "sentiment_clf", and ``app.py`` and ``build_model.py`` as "entry points"
(``model.py`` and ``util.py`` are training's). An arrow is one module importing another
in a different room (each top-level module counting as a room of its own); the walk of a request is the sequence of
package modules whose functions it enters, in order, with repeats of the same module
folded (a hop is a step from one module to another).

    python -m bench.experiments.rooms [--root sentiment-clf] [--walk]

``--walk`` serves ``GET /?query=...`` and ``POST /feedback`` once each through Flask's test
client (a temporary SQLite database) and prints the modules each walks through.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ENTRY_POINTS = ("app", "model", "build_model", "util")


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for the entry points and the package."""
    found = {name: root / f"{name}.py" for name in ENTRY_POINTS if (root / f"{name}.py").exists()}
    for path in sorted((root / "sentiment_clf").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def room(module: str) -> str:
    """The room a module is in: a sub-package of sentiment_clf, "sentiment_clf" for the
    package's top-level modules, "entry points" for app.py and build_model.py; model.py
    and util.py are training's (the estimator and the loaders it builds on)."""
    if module in ("model", "util"):
        return "sentiment_clf.training"
    if module in ENTRY_POINTS:
        return "entry points"
    parts = module.split(".")
    return ".".join(parts[:2]) if module in _PACKAGES or len(parts) > 2 else "sentiment_clf"


def node(module: str) -> str:
    """What an arrow joins: a room, or one of the package's top-level modules (config,
    tasks, errors: each stands alone, some below the rooms and some above)."""
    found = room(module)
    return module if found == "sentiment_clf" else found


_PACKAGES: set[str] = set()


def imports(path: Path, known: set[str]) -> set[str]:
    """The known modules ``path`` imports (a ``from package import module`` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def figures(root: Path) -> dict:
    found = modules(root)
    _PACKAGES.clear()
    _PACKAGES.update(name for name, path in found.items() if path.name == "__init__.py")
    per_room: dict[str, dict] = defaultdict(lambda: {"modules": 0, "lines": 0})
    for name, path in found.items():
        per_room[room(name)]["modules"] += 1
        per_room[room(name)]["lines"] += len(path.read_text(encoding="utf-8").splitlines())
    arrows: Counter = Counter()
    for name, path in found.items():
        for other in imports(path, set(found)) - {name}:
            if node(other) != node(name):
                arrows[(node(name), node(other))] += 1
    pairs = {tuple(sorted(pair)) for pair in arrows}
    both_ways = sorted(pair for pair in pairs if (pair[0], pair[1]) in arrows and (pair[1], pair[0]) in arrows)
    return {"rooms": dict(sorted(per_room.items())), "arrows": sum(arrows.values()),
            "directed_pairs": len(arrows), "room_pairs": len(pairs),
            "both_ways": [" <-> ".join(pair) for pair in both_ways],
            "by_pair": {f"{a} -> {b}": n for (a, b), n in sorted(arrows.items())}}


def walk(root: Path) -> dict[str, list[str]]:
    """The package modules ``GET /`` and ``POST /feedback`` enter, in order (measured in a
    process of its own, whose PYTHONPATH puts ``root`` first)."""
    env = {**os.environ, "PYTHONPATH": str(root.resolve()), "SENTIMENT_CLF_LOG_LEVEL": "WARNING"}
    found = subprocess.run([sys.executable, "-m", "bench.experiments.rooms", "--walk-here"], env=env, check=True,
                           capture_output=True, text=True).stdout
    return json.loads(found)


def walk_here() -> dict[str, list[str]]:
    from app import create_app  # noqa: PLC0415 (the tree under measure, first on PYTHONPATH)

    folder = tempfile.mkdtemp()
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder}/walk.db", "SYNC_INTERVAL": 3600})
    client = app.test_client()
    client.get("/?query=warm up")  # first-request work is not the walk
    walks = {}
    for name, call in (("GET /", lambda: client.get("/?query=that movie was boring")),
                       ("POST /feedback", lambda: client.post("/feedback", json={
                           "model": "sentiment", "query": "that movie was boring", "label": "Negative"}))):
        seen: list[str] = []

        def trace(frame, event, _arg, seen=seen):
            if event == "call":
                module = frame.f_globals.get("__name__", "")
                if (module.startswith("sentiment_clf") or module in ENTRY_POINTS) and (not seen or seen[-1] != module):
                    seen.append(module)

        sys.setprofile(trace)
        try:
            response = call()
        finally:
            sys.setprofile(None)
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        walks[name] = seen
    return walks


def rooms_walked(seen: list[str]) -> list[str]:
    """The rooms of a walk, in order, repeats folded."""
    found = [room(module) for module in seen]
    return [r for i, r in enumerate(found) if not i or r != found[i - 1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("sentiment-clf"))
    parser.add_argument("--walk", action="store_true")
    parser.add_argument("--walk-here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.walk_here:
        json.dump(walk_here(), sys.stdout)
        return
    result = figures(args.root)
    if args.walk:
        walks = walk(args.root)
        result["walks"] = {name: {"hops": len(seen) - 1, "modules": len(set(seen)), "rooms": rooms_walked(seen),
                                  "path": seen}
                           for name, seen in walks.items()}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
