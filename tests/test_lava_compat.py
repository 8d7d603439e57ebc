"""The Python 3.11 compatibility shim of the Lava backend (``backends/lavasim/compat.py``).

``test_lava_still_needs_the_shim`` fails loudly on the day a lava release
imports on this Python without the shim: then delete the shim.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

pytest.importorskip("lava", reason="lava-nc is not installed (see docs/lava.md)")

from backends.lavasim import compat  # noqa: E402


def test_lava_still_needs_the_shim():
    """Without the shim, lava's var_model must fail to import on this Python (>= 3.11)."""
    if not compat.shim_needed():
        pytest.skip(f"Python {sys.version_info[:2]} predates bpo-44674; the shim is a no-op here")
    proc = subprocess.run([sys.executable, "-c", "import lava.magma.compiler.var_model"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        pytest.fail(
            "lava.magma.compiler.var_model now imports on this Python without the compatibility shim: "
            "this lava release no longer needs backends/lavasim/compat.py; remove the shim and this test"
        )
    assert "mutable default" in proc.stderr and "ByteEncoder" in proc.stderr, proc.stderr[-2000:]


def test_shim_imports_lava_and_restores_dataclasses():
    original = dataclasses._get_field
    compat.import_lava()
    compat.import_lava()  # idempotent
    assert dataclasses._get_field is original
    from lava.magma.compiler.var_model import ByteEncoder, CoreEncoder

    a, b = CoreEncoder(), CoreEncoder()
    assert a.x == ByteEncoder() and a.x is not b.x  # a fresh copy of the default per object


def test_shim_leaves_other_dataclasses_alone():
    compat.import_lava()

    @dataclasses.dataclass
    class Unhashable:
        x: int = 0

    with pytest.raises(ValueError, match="mutable default"):
        @dataclasses.dataclass
        class Holder:
            inner: Unhashable = Unhashable()
