"""What the peer adapters share: input checks, NIR graph inspection, the time loop's bookkeeping.

A peer adapter runs a ``nir.NIRGraph`` in another SNN library *through that
library's own NIR importer*, as a user of the library would, and reports what
it computed in ntgraph's layout: every ``nir.Output`` by node name and every
probe ``"<nir node>.<var>"`` (``spikes``, ``v``, ``i``), each ``[T, batch, n]``.
It never corrects the peer: what the importer gets wrong shows up in the
comparison, and what the adapter knows the importer does is announced with
a :class:`PeerWarning` (and listed in the backend's ``limitations``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ntgraph.compiler import CompileOptions
from ntgraph.errors import ShapeError, UnsupportedNodeError, ValidationError

__all__ = ["PeerWarning", "PeerBackend", "check_inputs", "parse_record", "captured_prints", "node_types"]


class PeerWarning(UserWarning):
    """The peer's importer does something that makes it compute differently from the NIR graph it was given."""


def node_types(nir_graph: Any) -> dict[str, str]:
    """NIR node name -> class name, for the top level of ``nir_graph``."""
    return {name: type(node).__name__ for name, node in nir_graph.nodes.items()}


def check_graph(peer: str, nir_graph: Any, supported: Iterable[str], dropped: Iterable[str] = ()) -> None:
    """Refuse node types the peer's importer cannot map (``dropped`` ones are run and warned about instead)."""
    import nir

    if not isinstance(nir_graph, nir.NIRGraph):
        raise ValidationError(f"{peer}: expected a nir.NIRGraph, got {type(nir_graph).__name__}")
    supported, dropped = set(supported), set(dropped)
    inputs = [k for k, n in nir_graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedNodeError(
            f"{peer}: the NIR graph has {len(inputs)} Input nodes {inputs}; the peer's importer (through nirtorch) "
            f"runs graphs with exactly one input"
        )
    for name, kind in node_types(nir_graph).items():
        if kind in dropped:
            warnings.warn(PeerWarning(
                f"{peer}'s NIR importer has no mapping for nir.{kind} (node '{name}') and silently drops it: "
                f"its input passes through unchanged"), stacklevel=3)
        elif kind not in supported:
            raise UnsupportedNodeError(
                f"{peer}: NIR node '{name}' is a nir.{kind}, which the peer's NIR importer cannot map; "
                f"it maps {', '.join(sorted(supported - {'Input', 'Output'}))}"
            )


def input_name(nir_graph: Any) -> str:
    import nir

    return next(k for k, n in nir_graph.nodes.items() if isinstance(n, nir.Input))


def output_names(nir_graph: Any) -> list[str]:
    import nir

    return [k for k, n in nir_graph.nodes.items() if isinstance(n, nir.Output)]


def check_inputs(peer: str, nir_graph: Any, inputs: Mapping[str, Any]) -> np.ndarray:
    """The one input array ``[T, batch, n]`` (float64), checked against the graph's Input node."""
    name = input_name(nir_graph)
    if set(inputs) != {name}:
        raise ValidationError(f"{peer}: inputs: expected one array named {name!r} (the NIR Input node), got {sorted(inputs)}")
    x = np.asarray(inputs[name], dtype=np.float64)
    shape = np.asarray(next(iter(nir_graph.nodes[name].input_type.values()))).ravel()
    n = int(np.prod(shape)) if shape.size else 0
    if x.ndim != 3 or (n and x.shape[-1] != n):
        raise ShapeError(f"{peer}: Input '{name}': expected an array of shape [T, batch, {n}], got shape {x.shape}")
    return x


def parse_record(peer: str, nir_graph: Any, record: Sequence[str], variables: Mapping[str, Sequence[str]]) -> list[tuple[str, str, str]]:
    """``"node.var"`` probes -> (key, node, var); ``variables`` maps NIR class names to their recordable variables."""
    kinds = node_types(nir_graph)
    probes = []
    for spec in record:
        node, sep, var = spec.rpartition(".")
        if not sep or node not in kinds:
            if spec in kinds and kinds[spec] in variables:
                node, var = spec, variables[kinds[spec]][0]
            else:
                raise ValidationError(f"{peer}: record {spec!r}: expected '<NIR node>.<variable>' of a neuron node")
        allowed = variables.get(kinds[node], ())
        if var not in allowed:
            raise ValidationError(
                f"{peer}: record {spec!r}: nir.{kinds[node]} node '{node}' has no recordable variable {var!r}; "
                f"expected one of {', '.join(allowed) or '(none)'}"
            )
        probes.append((f"{node}.{var}", node, var))
    return probes


#: Lines a peer prints as progress, not as a finding.
PROGRESS_LINES = ("replace rnn subgraph with nirgraph",)


@contextlib.contextmanager
def captured_prints(peer: str) -> Iterator[None]:
    """Collect what the peer prints while importing into one :class:`PeerWarning` (progress lines dropped)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    seen: list[str] = []
    for line in buf.getvalue().splitlines():
        line = " ".join(line.split())
        if line and line not in seen and line not in PROGRESS_LINES:
            seen.append(line if len(line) <= 200 else line[:197] + "...")
    if seen:
        warnings.warn(PeerWarning(f"{peer} importer printed: " + " | ".join(seen)), stacklevel=3)


def fresh_copy(nir_graph: Any) -> Any:
    """A deep copy: some importers rewrite the graph they are given (snnTorch folds recurrent pairs in place)."""
    return copy.deepcopy(nir_graph)


class PeerBackend:
    """Base class: a peer simulator reached through NIR; ``lower`` and ``simulate`` refuse, ``simulate_nir`` runs."""

    name = "peer"
    #: tags of what the peer's importer does differently from NIR (see ``ntgraph.compare.diagnose``)
    limitations: tuple[str, ...] = ()
    precision = "float32"

    def lower(self, graph: Any, options: CompileOptions) -> Any:
        raise ValidationError(
            f"backend {self.name!r} only simulates NIR graphs: lower the graph with the 'nir' backend and call "
            f"get_backend({self.name!r}).simulate_nir(nir_graph, inputs, dt=..., record=...) "
            f"(ntgraph.compare does this for you)"
        )

    def simulate_nir(self, nir_graph: Any, inputs: Mapping[str, Any], dt: float,
                     record: Sequence[str] = ()) -> dict[str, np.ndarray]:
        raise NotImplementedError
