"""Every ```python block of the home page, the getting-started page, the how-to guides and the page for
users of other simulators runs, so the docs cannot rot.

The blocks of one page run in order in one namespace (a page is one script, as a reader would paste
it), in a temporary working directory, with torch limited to one thread.  Only code that cannot run
here is fenced otherwise: ``bash`` for shell commands and ``py`` for a package that is not installed
(NeuroTorch on docs/coming-from.md); there is no skip list.  A page whose code needs an optional
package that is not installed is skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted([DOCS / "index.md", DOCS / "getting-started.md", DOCS / "coming-from.md",
                *(DOCS / "howto").glob("*.md")])
BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
#: what a page's code mentions -> the optional module it then needs
NEEDS = {r"\bbackends\.nirio\b|\bimport nir\b|\"nir\"": "nir",
         r"\bbackends\.onnxio\b|\"onnx\"": "onnxruntime",
         r"\bbackends\.lavasim\b|\"lava\"": "lava",
         r"\bsnntorch\b": "snntorch", r"\bnorse\b": "norse", r"\brockpool\b": "rockpool",
         r"\bload_digits\b|\bdigits_task\b": "sklearn"}


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fences of a Markdown page, dedented to their fence, in order."""
    blocks = []
    for m in BLOCK.finditer(text):
        indent = len(m["indent"])
        blocks.append("\n".join(line[indent:] for line in m["body"].splitlines()))
    return blocks


def test_block_extraction_finds_fences_and_ignores_other_languages() -> None:
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n1. item\n\n    ```python\n    y = x + 1\n    ```\n"
    assert python_blocks(text) == ["x = 1", "y = x + 1"]


def test_every_documented_page_has_snippets() -> None:
    assert (DOCS / "getting-started.md") in PAGES and len(PAGES) >= 8, PAGES
    for page in PAGES:
        assert python_blocks(page.read_text()), f"{page.name}: no ```python block to test"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_snippets_run(page: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page.read_text()
    code = "\n\n".join(python_blocks(text))
    for pattern, module in NEEDS.items():
        if re.search(pattern, code) and importlib.util.find_spec(module) is None:
            pytest.skip(f"{page.name} needs {module}, which is not installed")
    torch = pytest.importorskip("torch")
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_snippet_{page.stem.replace('-', '_')}"}
    try:
        for k, block in enumerate(python_blocks(text)):
            try:
                exec(compile(block, f"{page.name}[python block {k}]", "exec"), namespace)  # noqa: S102 -- the docs' own code
            except Exception as exc:  # name the page and block, then let pytest show the traceback
                raise AssertionError(f"{page.name}, python block {k} failed:\n{block}") from exc
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
