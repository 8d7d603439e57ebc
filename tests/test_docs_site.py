"""The documentation site builds with MkDocs in strict mode: any warning (a broken link or anchor, a page
missing from the nav, a docstring griffe cannot parse) fails the build, and so this test.

Also checks the griffe extension that turns the docstrings' reST idioms into Markdown for the site
(docs/_ext/griffe_rst.py) on hand-written cases.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _missing_docs_tools() -> list[str]:
    """The packages of the ``[docs]`` extra that cannot be imported (mkdocstrings-python is ``mkdocstrings_handlers``)."""
    return [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "griffe")
            if importlib.util.find_spec(m) is None]


needs_docs_tools = pytest.mark.skipif(bool(_missing_docs_tools()),
                                      reason=f"the [docs] extra is not installed: missing {_missing_docs_tools()}")


@needs_docs_tools
def test_site_builds_in_strict_mode(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    problems = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [proc.stderr[-3000:]])
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "concepts/index.html", "coming-from/index.html",
                 "howto/dales-law/index.html", "reference/graph/index.html", "reference/torchsim/index.html"):
        assert (site / page).is_file(), f"{page} was not built"
    graph_ref = (site / "reference/graph/index.html").read_text()
    assert 'id="ntgraph.graph.Graph.dense"' in graph_ref      # the API reference comes from the docstrings
    assert ":class:`" not in graph_ref                         # reST roles were turned into Markdown


def _griffe_rst():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("griffe_rst", ROOT / "docs" / "_ext" / "griffe_rst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class _Obj:
    """The part of a griffe object the rewriting uses."""

    is_module = True
    is_package = True
    is_init_module = True
    path = "pkg"

    def resolve(self, name: str) -> str:
        if name == "Graph":
            return "pkg.graph.Graph"
        raise KeyError(name)


def test_rst_roles_become_optional_cross_references() -> None:
    m = _griffe_rst()
    out = m.rst_to_markdown(_Obj(), "A :class:`Graph`, a :func:`~pkg.io.save` and :mod:`.data`.")
    assert out == ('A <autoref identifier="pkg.graph.Graph" optional><code>Graph</code></autoref>, '
                   'a <autoref identifier="pkg.io.save" optional><code>save</code></autoref> and '
                   '<autoref identifier="pkg.data" optional><code>data</code></autoref>.')


def test_literal_blocks_math_and_simple_tables_become_markdown() -> None:
    m = _griffe_rst()
    text = ("Usage::\n\n    g = Graph()\n    g.input('x', 3)\n\nAfter.\n\n"
            ".. math::  a = b\n\n"
            "=====  =========\nname   meaning\n=====  =========\n``x``  an input\n``y``  an output\n=====  =========\n")
    out = m.rst_to_markdown(_Obj(), text).splitlines()
    assert out[:6] == ["Usage:", "", "```text", "g = Graph()", "g.input('x', 3)", "```"]
    assert "```text" in out and "a = b" in out
    assert "| name | meaning |" in out and "|---|---|" in out and "| ``x`` | an input |" in out


def test_table_cells_that_overflow_their_column_stay_whole() -> None:
    m = _griffe_rst()
    text = ("=====  ======  ====\na      b       c\n=====  ======  ====\n"
            "longname word  x\n"           # the first cell runs into the second column
            "y      bbbbbbbccc\n"          # no gap at the third column: the word stays in the second cell
            "z      bb    cc\n"            # the third cell starts early, after a gap
            "=====  ======  ====\n")
    out = m.rst_to_markdown(_Obj(), text).splitlines()
    assert "| longname | word | x |" in out
    assert "| y | bbbbbbbccc |  |" in out
    assert "| z | bb | cc |" in out


def test_pipes_in_table_cells_are_escaped_outside_code_only() -> None:
    m = _griffe_rst()
    text = "====  ==================\nkey   value\n====  ==================\nf     ``\"a\" | \"b\"`` or a|b\n====  ==================\n"
    assert '| f | ``"a" | "b"`` or a\\|b |' in m.rst_to_markdown(_Obj(), text).splitlines()
