r"""snnTorch through its own NIR importer (``snntorch.import_nir.import_from_nir``, snnTorch 1.0).

What the importer builds (read from ``snntorch/import_nir.py``), per NIR node:

=============  ================================================================================
NIR node       snnTorch module
=============  ================================================================================
Affine/Linear  ``torch.nn.Linear`` (float32; the bias *is* loaded, unlike nirtorch's default map)
LIF            ``snn.Leaky(beta = 1 - dt_s/tau, threshold = v_th / w_scale, reset_mechanism="zero",
               reset_delay=False)`` with ``dt_s = 1e-4`` hard-coded and ``w_scale = r*dt_s/tau``:
               instead of scaling the input by ``w_scale`` it divides the threshold by the first
               distinct ``w_scale`` of the population
CubaLIF        ``snn.Synaptic(alpha = 1 - dt_s/tau_syn, beta = 1 - dt_s/tau_mem, ...)``, same hacks;
               asserts ``r == tau_mem/dt_s``
IF             ``snn.Leaky(beta=0.9, threshold = v_th*r)``: a *leaky* neuron; asserts ``r == 1``
LI, Scale,     no mapping: the import fails (nirtorch: "Unknown node type")
Delay, ...
=============  ================================================================================

and a LIF/CubaLIF paired with an Affine/Linear in a two-node cycle is folded
into a sub-graph (``_replace_rnn_subgraph_with_nirgraph``) whose input is
routed *through the recurrent weights* under nirtorch 2.x, so recurrent
networks compute something else (peers.md: it crashes on its own RLeaky export).

The adapter
-----------
* runs the graph at the caller's ``dt``: snnTorch's importer hard-codes
  ``dt_s = 1e-4``, so before importing, every time constant of the (copied)
  graph is multiplied by ``dt_s/dt``; the importer's ``beta = 1 - dt_s/tau'``
  is then ``1 - dt/tau`` and ``w_scale = r*dt/tau``, the Euler step of NIR's
  ODE at ``dt``;
* reports ``v`` in NIR units: snnTorch's ``mem`` is ``v / w_scale`` (the
  threshold hack), so the probe is ``mem * w_scale`` per neuron;
* calls the module once per step with the nirtorch state it returns.

Limitations (tags for ``ntgraph.compare``): reset always to zero (the reset
mode is not in NIR, and ``v_reset`` is ignored), ``v_leak`` must be 0, one
threshold per population, Euler only, float32, LI/Scale/Delay unsupported,
IF imported as a leaky neuron, recurrent pairs mis-wired, one input.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import snntorch  # noqa: F401 - the backend is "not importable" without it
import torch

from ntgraph.errors import UnsupportedNodeError

from .common import (PeerBackend, PeerWarning, captured_prints, check_graph, check_inputs, fresh_copy, output_names,
                     parse_record)

__all__ = ["SnnTorchBackend", "SNNTORCH_DT"]

#: The time step snnTorch's NIR importer hard-codes (``import_nir.py``: ``dt = 1e-4``).
SNNTORCH_DT = 1e-4
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "AvgPool2d", "IF", "LIF", "CubaLIF")
VARIABLES = {"LIF": ("spikes", "v"), "CubaLIF": ("spikes", "v", "i"), "IF": ("spikes", "v")}


def _rescale(nir_graph: Any, factor: float) -> None:
    """Multiply every time constant by ``factor`` (in place, recursing into sub-graphs)."""
    import nir

    for node in nir_graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            _rescale(node, factor)
        for name in ("tau", "tau_mem", "tau_syn"):
            if hasattr(node, name):
                setattr(node, name, np.asarray(getattr(node, name), dtype=np.float64) * factor)


def _voltage_scale(node: Any) -> np.ndarray:
    """``mem -> v``: the ``w_scale`` by which the importer divided the threshold (1 where it did not)."""
    import nir

    if isinstance(node, nir.LIF):
        w = np.asarray(node.r * SNNTORCH_DT / node.tau, dtype=np.float64)
    elif isinstance(node, nir.CubaLIF):
        w = np.asarray(node.w_in * SNNTORCH_DT / node.tau_syn, dtype=np.float64)
    else:
        return np.ones(np.asarray(node.v_threshold).shape)
    # the importer divides by the first distinct value (np.unique(w_scale)[0]) when they differ
    return np.full(w.shape, np.unique(w)[0]) if not np.allclose(w, 1.0) else np.ones(w.shape)


class SnnTorchBackend(PeerBackend):
    """snnTorch, reached through NIR: ``simulate_nir(nir_graph, inputs, dt, record)``."""

    name = "snntorch"
    precision = "float32"
    #: recordable variables per NIR node class
    variables = VARIABLES
    limitations = (
        "nir:reset-mode", "v_reset:ignored", "v_leak:unsupported", "threshold:uniform-only",
        "discretization:euler-only", "dtype:float32", "li:unsupported", "scale:unsupported", "delay:unsupported",
        "if:leaky", "recurrence:miswired", "inputs:single", "cubalif:r-fixed",
    )

    def simulate_nir(self, nir_graph: Any, inputs: Mapping[str, Any], dt: float,
                     record: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Import with ``import_from_nir`` and run ``T`` steps; outputs by NIR Output name, probes ``"node.var"``."""
        import nir
        from snntorch._neurons.neurons import SpikingNeuron
        from snntorch.import_nir import import_from_nir

        check_graph(self.name, nir_graph, SUPPORTED)
        x = check_inputs(self.name, nir_graph, inputs)
        probes = parse_record(self.name, nir_graph, record, VARIABLES)
        graph = fresh_copy(nir_graph)
        _rescale(graph, SNNTORCH_DT / float(dt))
        scales = {k: _voltage_scale(n) for k, n in graph.nodes.items() if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF))}
        with captured_prints(self.name):
            try:
                module = import_from_nir(graph)
            except (AssertionError, ValueError, NotImplementedError, KeyError, TypeError) as exc:
                raise UnsupportedNodeError(
                    f"snntorch: import_from_nir refused the graph ({type(exc).__name__}: {exc or 'assertion failed'})"
                ) from exc
        neurons = {}
        for path, mod in module.named_modules():
            if isinstance(mod, SpikingNeuron):
                key = path.rsplit(".", 1)[-1]
                neurons.setdefault(key, mod)
        outs: dict[str, list[np.ndarray]] = {key: [] for key, _, _ in probes}
        spikes_now: dict[str, torch.Tensor] = {}

        def hook(name: str):
            def fn(_mod: Any, _inp: Any, out: Any) -> None:
                spikes_now[name] = out[0] if isinstance(out, tuple) else out
            return fn

        wanted = {node for _, node, _ in probes}
        missing = [n for n in wanted if n.replace(".", "_") not in neurons and n not in neurons]
        if missing:
            raise UnsupportedNodeError(f"snntorch: no snnTorch neuron was built for NIR node(s) {missing}; cannot record them")
        handles = [neurons.get(n, neurons.get(n.replace(".", "_"))).register_forward_hook(hook(n)) for n in wanted]
        steps = x.shape[0]
        out_name = output_names(nir_graph)
        results: list[np.ndarray] = []
        try:
            state = None
            with torch.no_grad():
                for t in range(steps):
                    xt = torch.as_tensor(x[t], dtype=torch.float32)
                    ret = module(xt) if state is None else module(xt, state)
                    out, state = (ret[0], ret[1]) if isinstance(ret, tuple) else (ret, None)
                    out = out[0] if isinstance(out, tuple) else out
                    results.append(out.detach().double().numpy().copy())
                    for key, node, var in probes:
                        mod = neurons.get(node, neurons.get(node.replace(".", "_")))
                        if var == "spikes":
                            val = spikes_now[node]
                            arr = val.detach().double().numpy().copy()
                        elif var == "v":
                            arr = mod.mem.detach().double().numpy() * scales[node]
                        else:  # "i" of a Synaptic: syn is i scaled like the membrane input
                            arr = mod.syn.detach().double().numpy() * scales[node]
                        outs[key].append(np.array(arr, dtype=np.float64))
        finally:
            for h in handles:
                h.remove()
        if len(out_name) != 1:
            warnings.warn(PeerWarning(f"snntorch: the graph has {len(out_name)} outputs; nirtorch returns one"), stacklevel=2)
        arrays = {out_name[0]: np.stack(results)}
        arrays.update({k: np.stack(v) for k, v in outs.items()})
        return arrays
