"""MkDocs hook: list every page under ``docs/experiments/`` in the "Results" section of the navigation.

The experiment pages (one per reproduced result) are added as they are written, so the navigation
picks them up by itself instead of naming each in ``mkdocs.yml``: every ``experiments/*.md`` not
already in the nav is appended to the section titled ``Results``, in file-name order, titled by the
page's first ``# `` heading.  Any other page missing from the nav is still reported by MkDocs'
``validation.omitted_files`` (an error under ``--strict``).  Loaded by ``mkdocs.yml`` (``hooks:``).
"""

from __future__ import annotations

import pathlib
from typing import Any

SECTION = "Results"
FOLDER = "experiments"


def _title(path: pathlib.Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def _listed(nav: Any) -> set[str]:
    """Every file path named anywhere in a (nested) MkDocs nav."""
    found: set[str] = set()
    if isinstance(nav, str):
        found.add(nav)
    elif isinstance(nav, list):
        for item in nav:
            found |= _listed(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            found |= _listed(value)
    return found


def on_config(config: Any, **kwargs: Any) -> Any:
    nav = config["nav"]
    folder = pathlib.Path(config["docs_dir"]) / FOLDER
    if not nav or not folder.is_dir():
        return config
    listed = _listed(nav)
    pages = [p for p in sorted(folder.glob("*.md")) if f"{FOLDER}/{p.name}" not in listed]
    if not pages:
        return config
    for entry in nav:
        if isinstance(entry, dict) and SECTION in entry:
            section = entry[SECTION]
            if not isinstance(section, list):
                section = entry[SECTION] = [section]
            section.extend({_title(p): f"{FOLDER}/{p.name}"} for p in pages)
            return config
    nav.append({SECTION: [{_title(p): f"{FOLDER}/{p.name}"} for p in pages]})
    return config
