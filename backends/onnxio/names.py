"""Readable, unique ONNX names derived from ntgraph node ids.

ONNX accepts any string as a tensor name, but tools (Netron, code generators
for microcontrollers, C APIs) read best with identifier-like names.  A node id
is sanitised to ``[A-Za-z0-9_.]``: the builder's ``"->"`` becomes ``"_to_"``
(``"in->hid"`` -> ``"in_to_hid"``), its duplicate marker ``"#"`` becomes
``"_"``, and every other character becomes ``"_"``.  :class:`NameScope` then
hands out names that are unique within one model (main graph and Scan body
share one scope, as ONNX requires names to be unique across nested graphs).
"""

from __future__ import annotations

import re

__all__ = ["sanitize", "NameScope"]

_BAD = re.compile(r"[^A-Za-z0-9_.]")


def sanitize(node_id: str) -> str:
    """``node_id`` as an identifier-like ONNX name (``"x->hid"`` -> ``"x_to_hid"``)."""
    text = _BAD.sub("_", node_id.replace("->", "_to_"))
    return text or "_"


class NameScope:
    """Allocator of unique names: ``fresh("hid.v")`` gives ``"hid.v"``, then ``"hid.v_1"``, ..."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._used

    def fresh(self, base: str) -> str:
        """A name not handed out before, ``base`` itself when it is free."""
        if base not in self._used:
            self._used.add(base)
            return base
        k = 1
        while f"{base}_{k}" in self._used:
            k += 1
        name = f"{base}_{k}"
        self._used.add(name)
        return name
