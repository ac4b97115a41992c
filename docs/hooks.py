"""MkDocs hooks: the HTTP API reference generated from the service's OpenAPI document
(the one /openapi.json serves, with the default limits), so it cannot drift from the
code; the document itself is published beside it as openapi.json."""
from __future__ import annotations

import functools
import json

from mkdocs.structure.files import File, Files

from sentiment_clf.config import Settings
from sentiment_clf.web import openapi, schemas, ui

MARKER = "<!-- openapi operations -->"


@functools.cache
def _document() -> dict:
    settings = Settings()
    return openapi.build(schemas.build(settings.max_query_chars, settings.max_batch, ui.served_names()))


def _operations(document: dict) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            statuses = ", ".join(sorted(operation.get("responses", {})))
            row = f"| `{method.upper()} {path}` | {operation.get('summary', '')} | {statuses} |"
            by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(row)
    sections = []
    for tag in [t["name"] for t in document.get("tags", [])] + sorted(set(by_tag) - {t["name"] for t in
                                                                                       document.get("tags", [])}):
        if tag in by_tag:
            sections.append(f"## {tag}\n\n| operation | what it does | statuses |\n|---|---|---|\n"
                            + "\n".join(by_tag[tag]))
    return "\n\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _operations(_document()))
    return markdown


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "reference/openapi.json", content=json.dumps(_document(), indent=1)))
    return files
