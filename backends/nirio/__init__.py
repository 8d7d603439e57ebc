"""NIR backend: exact export to and import from the Neuromorphic Intermediate Representation.

* :func:`to_nir` (and ``ntgraph.compile(graph, "nir", dt=...)``,
  ``ntgraph export model.ntg --format nir``) writes an ntgraph graph as a
  ``nir.NIRGraph`` whose NIR fields mean exactly what ntgraph simulates, with
  ntgraph's extras in ``metadata`` so the file reads back to an identical graph;
* :func:`from_nir` (and ``ntgraph import model.nir``, ``ntgraph run model.nir``)
  reads ntgraph's own files exactly and any other NIR graph under a *dialect*
  that reproduces its producer (plain NIR, snnTorch, Norse, Rockpool).

See ``docs/interop.md`` for the conventions, the peer-by-peer table and the
known divergences.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional, Union

import nir

from ntgraph.compiler import CompileOptions, prepare
from ntgraph.graph import Graph

from .dialects import DIALECTS, rockpool_dt
from .export import OPTIONS, NirExportWarning, lower, nir_key, write
from .importer import NirImportWarning, from_nir

__all__ = [
    "NirBackend",
    "to_nir",
    "from_nir",
    "NirExportWarning",
    "NirImportWarning",
    "DIALECTS",
    "OPTIONS",
    "nir_key",
    "rockpool_dt",
]


class NirBackend:
    """The ``"nir"`` backend: ``lower`` returns a ``nir.NIRGraph``, ``export`` writes a ``.nir`` file.

    Options (``CompileOptions.extra``, ``--set KEY=VALUE`` on the command line):
    ``strict`` (default False: export ALIF and subtract-reset neurons with a
    warning; True: refuse them) and ``one_to_one`` (``"scale"``, the default,
    or ``"linear"`` for peers without ``nir.Scale``).
    """

    name = "nir"

    def lower(self, graph: Graph, options: CompileOptions) -> nir.NIRGraph:
        return lower(graph, options)

    def export(self, graph: Graph, options: CompileOptions, path: Union[str, pathlib.Path], **_: Any) -> pathlib.Path:
        """Write the prepared ``graph`` to ``path`` (atomically) and return the path."""
        return write(lower(graph, options), path)


def to_nir(
    graph: Graph,
    path: Optional[Union[str, pathlib.Path]] = None,
    *,
    dt: float,
    discretization: str = "euler",
    timing: str = "sync",
    strict: bool = False,
    one_to_one: str = "scale",
) -> nir.NIRGraph:
    """Export ``graph`` to NIR; write it to ``path`` when given.  Returns the ``nir.NIRGraph``.

    ``dt`` (seconds) converts delays in steps to NIR Delay nodes in seconds and
    is recorded with ``discretization`` and ``timing`` (``"pipelined"`` adds a
    step to every delay, as the simulation would).  ``strict``: refuse nodes a
    peer would read differently (ALIF, subtract reset) instead of warning.
    ``one_to_one``: ``"scale"`` (nir.Scale) or ``"linear"`` (diagonal nir.Linear).
    Raises :class:`~ntgraph.errors.UnsupportedNodeError` naming any node NIR
    cannot express (rate models).
    """
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing,
                             extra={"strict": strict, "one_to_one": one_to_one})
    result = lower(prepare(graph, options), options)
    if path is not None:
        write(result, path)
    return result
