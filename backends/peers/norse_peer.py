r"""Norse through its own NIR importer (``norse.torch.from_nir``, Norse 1.1).

What the importer builds (read from ``norse/torch/utils/import_nir.py``), run
through nirtorch's (deprecated) ``GraphExecutor``:

=============  ================================================================================
NIR node       Norse module
=============  ================================================================================
Affine         ``torch.nn.Linear`` with the bias (float32)
Linear         ``torch.nn.Linear`` (in/out features swapped in the constructor, weights replaced)
LIF            ``LIFBoxCell(tau_mem_inv = 1/tau, v_th, v_leak)``, ``dt`` given to ``from_nir``:
               ``v <- v + dt/tau*(v_leak - v + I)``; ``z = v > v_th``; ``v <- v_reset = 0``.
               ``r`` is ignored (a logged warning when r != 1); ``v_reset`` is ignored (0)
CubaLIF        ``w_in*I`` into an ``LIBoxCell`` (the synapse, with the *membrane's* v_leak),
               ``r*i`` into a ``LIFBoxCell``
IF             ``IAFCell(v_th)``: ``v <- v + I`` per step (``dt`` and ``r`` ignored)
LI             no mapping: the importer returns None and nirtorch wires the node's input
               straight through, so an LI readout reports its input current ("norse drops LI")
Delay, Scale,  no mapping either, but nirtorch then fails on the graph's edges
...            (``KeyError``); the adapter refuses them up front
=============  ================================================================================

The reset is Norse's ``reset_value`` (to 0) unless ``reset_method`` is passed,
and NIR has no field for the reset mode, so a subtract-reset network resets to
zero.  The adapter runs the importer with its defaults (``dt`` = the caller's
``dt``), passes nirtorch's state from step to step, and reads spikes from the
executor's cache and ``v`` (``i``) from the neuron states.

Limitations (tags for ``ntgraph.compare``): reset mode lost, ``v_reset``
ignored, ``r`` ignored, IF per step, LI dropped, Scale/Delay unsupported, CubaLIF synapse
leaks towards ``v_leak``, Euler only, float32, one input.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import norse.torch  # noqa: F401 - the backend is "not importable" without it
import torch

from ntgraph.errors import UnsupportedNodeError

from .common import PeerBackend, PeerWarning, check_graph, check_inputs, output_names, parse_record

__all__ = ["NorseBackend"]

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "IF", "LIF", "CubaLIF", "SumPool2d")
#: Node types the importer silently drops (nirtorch wires the node's input straight through).
DROPPED = ("LI",)
VARIABLES = {"LIF": ("spikes", "v"), "CubaLIF": ("spikes", "v", "i"), "IF": ("spikes", "v")}


class _LogToWarnings(logging.Handler):
    """Norse reports diverging parameters through ``logging.warning``; surface them as PeerWarnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = " ".join(record.getMessage().split())
        if msg not in self.messages:
            self.messages.append(msg)


def _state_vectors(state: Any) -> list[torch.Tensor]:
    """Every ``v`` field found in a (nested) Norse state, in order (LIF: [v]; CubaLIF: [i, v])."""
    found: list[torch.Tensor] = []
    if state is None:
        return found
    if hasattr(state, "_fields"):
        if "v" in state._fields:
            found.append(state.v)
            return found
    if isinstance(state, (tuple, list)):
        for s in state:
            found.extend(_state_vectors(s))
    return found


class NorseBackend(PeerBackend):
    """Norse, reached through NIR: ``simulate_nir(nir_graph, inputs, dt, record)``."""

    name = "norse"
    precision = "float32"
    #: recordable variables per NIR node class
    variables = VARIABLES
    limitations = (
        "nir:reset-mode", "v_reset:ignored", "r:ignored", "if:per-step", "li:dropped",
        "scale:unsupported", "delay:unsupported", "cubalif:synapse-leak", "discretization:euler-only", "dtype:float32",
        "inputs:single",
    )

    def simulate_nir(self, nir_graph: Any, inputs: Mapping[str, Any], dt: float,
                     record: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Import with ``norse.torch.from_nir(graph, dt=dt)`` and run ``T`` steps."""
        from norse.torch import from_nir

        check_graph(self.name, nir_graph, SUPPORTED, dropped=DROPPED)
        x = check_inputs(self.name, nir_graph, inputs)
        probes = parse_record(self.name, nir_graph, record, VARIABLES)
        handler = _LogToWarnings()
        root = logging.getLogger()
        old_handlers, old_level = list(root.handlers), root.level
        root.handlers = [handler]  # only ours while importing: the messages become PeerWarnings, not stderr lines
        root.setLevel(min(old_level or logging.WARNING, logging.WARNING))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*nirtorch.load.*")
                try:
                    module = from_nir(nir_graph, dt=float(dt))
                except (AssertionError, ValueError, NotImplementedError, KeyError, TypeError, AttributeError) as exc:
                    raise UnsupportedNodeError(f"norse: from_nir refused the graph ({type(exc).__name__}: {exc})") from exc
        finally:
            root.handlers = old_handlers
            root.setLevel(old_level)
        for msg in handler.messages:
            warnings.warn(PeerWarning(f"norse importer logged: {msg}"), stacklevel=2)
        names = {n: n.replace(".", "_") for n in nir_graph.nodes}
        outs: dict[str, list[np.ndarray]] = {key: [] for key, _, _ in probes}
        results: list[np.ndarray] = []
        state = None
        with torch.no_grad():
            for t in range(x.shape[0]):
                xt = torch.as_tensor(x[t], dtype=torch.float32)
                out, state = module(xt, state)
                results.append(out.detach().double().numpy().copy())
                for key, node, var in probes:
                    sname = names[node]
                    if var == "spikes":
                        val = state.cache.get(sname)
                    else:
                        vecs = _state_vectors(state.state.get(sname))
                        val = (vecs[-1] if var == "v" else vecs[0]) if vecs else None
                    if val is None:
                        raise UnsupportedNodeError(f"norse: no value of {var!r} for NIR node '{node}' in the executor's state")
                    outs[key].append(val.detach().double().numpy().copy())
        arrays = {output_names(nir_graph)[0]: np.stack(results)}
        arrays.update({k: np.stack(v) for k, v in outs.items()})
        return arrays
