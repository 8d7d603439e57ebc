"""Griffe extension for the documentation site: reST idioms of ntgraph's docstrings -> Markdown.

ntgraph's docstrings are written for readers of the source (and of ``help()``) in light reST:
Sphinx roles (``:class:`~ntgraph.graph.Graph```), literal blocks introduced by ``::``,
``.. math::`` directives and simple tables bordered by ``====``.  mkdocstrings renders docstrings as
Markdown, so this extension rewrites those four idioms before the docstrings are parsed:

* a role becomes an *optional* cross-reference (a link when the target is documented on the site,
  plain code otherwise -- never a broken link);
* a literal block and a math directive become fenced code blocks;
* a simple table becomes a Markdown table.

Only the text shown on the site changes; the source docstrings are untouched.  Loaded by
``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(?P<target>[^`]+)`")
TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
FENCE = "```"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _resolve(obj: Any, name: str) -> str:
    """Full path of ``name`` as seen from ``obj`` (best effort; unresolved names are returned as given)."""
    if name.startswith("."):
        module = obj if obj.is_module else obj.module
        package = module.path if module.is_package or module.is_init_module else module.parent.path
        return package + name
    head, _, rest = name.partition(".")
    try:
        full = obj.resolve(head)
    except Exception:  # noqa: BLE001 -- griffe raises several kinds; an unresolved name stays as written
        return name
    return f"{full}.{rest}" if rest else full


def _roles(obj: Any, text: str) -> str:
    def replace(match: re.Match) -> str:
        target = match["target"].strip()
        short = target.startswith("~")
        name = target.lstrip("~")
        title = name.lstrip(".").rsplit(".", 1)[-1] if short or name.startswith(".") else name
        identifier = _resolve(obj, name)
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(title)}</code></autoref>'

    return ROLE.sub(replace, text)


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The indented block after line ``start - 1`` (indent > ``base``), dedented, and the index after it."""
    j = start
    while j < len(lines) and not lines[j].strip():
        j += 1
    body: list[str] = []
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
        body.append(lines[j])
        j += 1
    while body and not body[-1].strip():
        body.pop()
    return textwrap.dedent("\n".join(body)).splitlines(), j


CODE_SPAN = re.compile(r"(`+).+?\1")


def _escape_pipes(cell: str) -> str:
    """Escape ``|`` for a Markdown table cell, except inside code spans (where the table parser leaves it)."""
    parts, last = [], 0
    for m in CODE_SPAN.finditer(cell):
        parts += [cell[last:m.start()].replace("|", "\\|"), m.group(0)]
        last = m.end()
    return "".join(parts + [cell[last:].replace("|", "\\|")])


def _boundary(line: str, b: int, prev: int) -> int:
    """Column start ``b`` moved off a word that crosses it (tables written slightly out of line).

    A word crossing ``b`` that begins after a gap of two spaces, past the previous cut ``prev``, starts
    the next cell early; any other word crossing ``b`` overflows the current cell and stays in it.
    """
    if b <= 0 or (b < len(line) and line[b - 1] == " ") or (b >= len(line) and (not line or line[-1] == " ")):
        return b
    b = min(b, len(line))
    start = b - 1
    while start > 0 and line[start - 1] != " ":
        start -= 1
    if start > prev and line[max(start - 2, 0):start] == "  ":
        return start
    end = b
    while end < len(line) and line[end] != " ":
        end += 1
    return end


def _table(obj: Any, lines: list[str], i: int) -> tuple[list[str], int]:
    """A reST simple table starting at border line ``i`` as Markdown table lines, and the index after it."""
    border = lines[i]
    spans = [m.span() for m in re.finditer(r"=+", border)]
    borders = [i]
    j = i + 1
    while j < len(lines) and len(borders) < 3:
        if TABLE_BORDER.match(lines[j]):
            borders.append(j)
        j += 1
    if len(borders) < 3:
        return [lines[i]], i + 1

    def cells(line: str) -> list[str]:
        cuts = [0]
        for a, _ in spans[1:]:
            cuts.append(max(_boundary(line, a, cuts[-1]), cuts[-1]))
        cuts.append(max(len(line), cuts[-1]))
        return [_escape_pipes(_roles(obj, line[a:b].strip())) for a, b in zip(cuts, cuts[1:])]

    indent = " " * _indent(border)
    header = [cells(line) for line in lines[borders[0] + 1:borders[1]] if line.strip()]
    rows: list[list[str]] = []
    for line in lines[borders[1] + 1:borders[2]]:
        if not line.strip():
            continue
        row = cells(line)
        if rows and not row[0]:  # continuation line: append to the previous row
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], row)]
        else:
            rows.append(row)
    head = header[0] if header else [""] * len(spans)
    table = ["", indent + "| " + " | ".join(head) + " |", indent + "|" + "---|" * len(spans)]
    table += [indent + "| " + " | ".join(r) + " |" for r in rows]
    return table + [""], borders[2] + 1


def rst_to_markdown(obj: Any, text: str) -> str:
    """Rewrite the reST idioms of one docstring (see the module docstring)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        base = _indent(line)
        pad = " " * base
        if stripped.startswith(".. math::"):
            first = stripped[len(".. math::"):].strip()
            body, i = _block(lines, i + 1, base)
            out += ["", pad + FENCE + "text"] + [pad + b for b in ([first] if first else []) + body] + [pad + FENCE, ""]
            continue
        if stripped.endswith("::"):
            body, j = _block(lines, i + 1, base)
            if body:
                intro = line.rstrip()[:-1].rstrip()
                if intro.strip() != ":":
                    out.append(_roles(obj, intro))
                out += ["", pad + FENCE + "text"] + [pad + b for b in body] + [pad + FENCE, ""]
                i = j
                continue
        if TABLE_BORDER.match(line):
            table, i = _table(obj, lines, i)
            out += table
            continue
        out.append(_roles(obj, line))
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None and not obj.is_alias:
            obj.docstring.value = rst_to_markdown(obj, obj.docstring.value)
