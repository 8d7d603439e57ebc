"""Peer simulators reached through NIR: snnTorch and Norse, each with its own NIR importer.

``get_backend("snntorch")`` and ``get_backend("norse")`` return adapters whose
``simulate_nir(nir_graph, inputs, dt, record)`` imports a ``nir.NIRGraph``
with the peer's importer (``snntorch.import_nir.import_from_nir``,
``norse.torch.from_nir``) and runs it on ``inputs`` (one array ``[T, batch,
n]`` by NIR Input name), returning every NIR Output and every probe
``"<node>.<var>"`` (``spikes``, ``v``, ``i``) as ``[T, batch, n]`` float64
arrays.  ``lower`` refuses: these backends never see ntgraph's IR, only what
NIR carries, which is the point of running them.  ``ntgraph.compare`` drives
them: it lowers the graph with the ``"nir"`` backend and hands the result over.

Each adapter lists what its peer's importer does differently from NIR in
``limitations`` (tags read by ``ntgraph.compare.diagnose``) and announces it at
run time with :class:`~backends.peers.common.PeerWarning`.  See
:mod:`backends.peers.snntorch_peer` and :mod:`backends.peers.norse_peer` for
the node-by-node tables, and ``docs/compare.md``.

The two peers are imported lazily, one module each, so a missing snnTorch
does not hide Norse (the registry reports the one that cannot be imported).
"""

from __future__ import annotations

from typing import Any

from .common import PeerBackend, PeerWarning

__all__ = ["SnnTorchBackend", "NorseBackend", "PeerBackend", "PeerWarning"]


def __getattr__(name: str) -> Any:
    if name == "SnnTorchBackend":
        from .snntorch_peer import SnnTorchBackend

        return SnnTorchBackend
    if name == "NorseBackend":
        from .norse_peer import NorseBackend

        return NorseBackend
    raise AttributeError(f"module 'backends.peers' has no attribute {name!r}")
