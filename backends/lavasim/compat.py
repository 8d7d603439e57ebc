"""Import lava-nc 0.10.0 on Python 3.11: the one compatibility step this backend needs.

The problem
-----------
lava-nc 0.10.0 (the last release; upstream is archived) declares
``Requires-Python <3.11``.  On 3.11 its import fails in
``lava/magma/compiler/var_model.py``::

    ValueError: mutable default <class 'lava.magma.compiler.var_model.ByteEncoder'>
    for field x is not allowed: use default_factory

Python 3.11 rejects a dataclass field whose default is an instance of an
unhashable class (bpo-44674; ``@dataclass`` with ``eq=True`` sets
``__hash__ = None``).  ``var_model.py`` declares ``x: ByteEncoder = ByteEncoder()``
and similar fields in ``CoreEncoder``, ``ChipEncoder`` and ``AxonEncoder``; that
is the only place in lava that trips over it.

The fix
-------
While lava is first imported, :func:`dataclasses._get_field` is wrapped so that
a field of a class defined in a ``lava.*`` module whose default is such an
unhashable instance gets ``default_factory=lambda: copy.deepcopy(default)``
instead.  Each object then gets its own copy of the default, with the same
value (on 3.10 they all shared one instance; lava never mutates these
defaults, they only describe Loihi hardware encodings).  The wrapper is removed
as soon as the import is done, and classes outside ``lava.*`` are never touched.
With it, lava's own process test suite (``tests/lava/proc``) passes in full on
3.11 (261 of 261).

:func:`import_lava` is the only entry point: the Lava backend calls it before it
touches any lava module, so nothing changes for users of the other backends.
``tests/test_lava_compat.py`` fails loudly once a lava release imports without
the shim, so this module can then be deleted.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["import_lava", "shim_needed", "LAVA_MODULES", "SHIM_NEEDED_FROM"]

#: The lava modules the backend uses; importing them under the shim pulls in
#: ``lava.magma.compiler.var_model`` (the module that needs it) as well.
LAVA_MODULES = (
    "lava.magma.compiler.var_model",
    "lava.magma.core.run_configs",
    "lava.magma.core.run_conditions",
    "lava.proc.lif.process",
    "lava.proc.lif.models",
    "lava.proc.dense.process",
    "lava.proc.dense.models",
    "lava.proc.sparse.process",
    "lava.proc.sparse.models",
    "lava.proc.io.source",
    "lava.proc.io.sink",
    "lava.utils.weightutils",
)

#: Python versions from which lava 0.10.0 needs the shim (bpo-44674 landed in 3.11).
SHIM_NEEDED_FROM = (3, 11)

_lock = threading.Lock()
_done = False


def _unhashable_instance(value: Any) -> bool:
    """True for a default that 3.11's dataclasses reject: an instance of a class with ``__hash__ = None``."""
    if value is dataclasses.MISSING or isinstance(value, (dataclasses.Field, type)):
        return False
    return getattr(type(value), "__hash__", None) is None


@contextmanager
def _factory_for_unhashable_defaults() -> Iterator[None]:
    """Within the block, lava's unhashable dataclass defaults become ``default_factory`` fields."""
    original = dataclasses._get_field  # type: ignore[attr-defined]

    def _get_field(cls: type, a_name: str, a_type: Any, *args: Any, **kwargs: Any) -> Any:
        if str(getattr(cls, "__module__", "")).startswith("lava."):
            default = cls.__dict__.get(a_name, dataclasses.MISSING)
            if _unhashable_instance(default):
                setattr(cls, a_name, dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d)))
        return original(cls, a_name, a_type, *args, **kwargs)

    dataclasses._get_field = _get_field  # type: ignore[attr-defined]
    try:
        yield
    finally:
        dataclasses._get_field = original  # type: ignore[attr-defined]


def shim_needed() -> bool:
    """Whether this interpreter needs the shim for lava (Python >= 3.11)."""
    return sys.version_info[:2] >= SHIM_NEEDED_FROM


def import_lava() -> None:
    """Import the lava modules the backend uses, applying the shim on Python >= 3.11.

    Idempotent and thread-safe.  Raises :class:`ImportError` with install
    instructions when lava-nc is not installed.
    """
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        try:
            importlib.import_module("lava")
        except ImportError as exc:
            raise ImportError(
                "the Lava backend needs lava-nc 0.10.0: pip install --no-deps --ignore-requires-python "
                "lava-nc==0.10.0 asteval scipy scikit-learn (see docs/lava.md)"
            ) from exc
        if shim_needed() and "lava.magma.compiler.var_model" not in sys.modules:
            with _factory_for_unhashable_defaults():
                for name in LAVA_MODULES:
                    importlib.import_module(name)
        else:
            for name in LAVA_MODULES:
                importlib.import_module(name)
        _done = True
