"""The Brian2 backend: ntgraph networks as Brian2 equations, run with the numpy code-generation target.

Brian2 (https://briansimulator.org) is a clock-driven simulator independent
of torch.  ``ntgraph.compile(graph, "brian2", dt=1e-3)`` checks the graph and
returns a :class:`~backends.brian2sim.network.Brian2Network`;
``network.run({"x": x}, record=["hid.v"])`` builds the Brian2 objects for the
batch and returns the torch backend's arrays (every Output and probe,
``[T, batch, n]``, float64).  ``ntgraph.simulate(graph, x, target="brian2", dt=...)``
does both.

How the IR is lowered (details in :mod:`backends.brian2sim.network` and
:mod:`backends.brian2sim.models`): one ``NeuronGroup`` per Input and per
Population (``B*n`` neurons for a batch of ``B``), one ``Synapses`` with a
summed variable per projection, ntgraph's discrete step as ``run_regularly``
code (no ODE integration: the step *is* the model), Brian2's threshold and
reset, and a history variable per delay step.  The clock's ``dt`` is the
compile option ``dt``; ``prefs.codegen.target`` is ``"numpy"`` while it runs.

Supported, in both discretisations and both timings:

* models ``LIF``, ``CubaLIF``, ``ALIF``, ``IF`` (reset ``"zero"`` and
  ``"subtract"``), ``LI``, ``WilsonCowan``, ``RateUnit``;
* projections ``Dense`` (with bias, masks, Dale's law and every other
  constraint, applied to the weights), ``Sparse``, ``OneToOne``, any delay;
* any number of Inputs and Outputs, recurrence through delayed projections.

Agreement with the torch backend run in float64: the neuron arithmetic is
the same operation for operation, so spikes are identical and voltages agree
to a few units in the last place (only the order in which a projection's
weighted sum is accumulated differs); rate models add the last-place
differences of ``exp``/``tanh`` between numpy and torch.  Anything else (a
custom node type, a model not listed) raises
:class:`~ntgraph.errors.UnsupportedNodeError` naming the node.

Backend options: none (an unknown option is an error).  The numpy target
costs about half a millisecond per step for a hundred neurons, plus a few
tenths of a second to build the network; Brian2 itself takes seconds to import.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import brian2  # noqa: F401 - imported here so that a missing brian2 makes the backend "not importable"

from ntgraph.compiler import CompileOptions
from ntgraph.errors import ValidationError
from ntgraph.graph import Graph

from .models import MODEL_LOWERINGS, NeuronCode
from .network import PROJECTION_TYPES, Brian2Network, plan

__all__ = ["Brian2Backend", "Brian2Network", "MODEL_LOWERINGS", "NeuronCode", "PROJECTION_TYPES", "OPTIONS"]

OPTIONS: dict[str, Any] = {}


class Brian2Backend:
    """Lowers a prepared graph to a :class:`Brian2Network` (Brian2's numpy target, float64)."""

    name = "brian2"
    #: What a comparison should know about this simulator (see ``ntgraph.compare``).
    limitations: tuple[str, ...] = ("sum-order",)
    precision = "float64"

    def lower(self, graph: Graph, options: CompileOptions) -> Brian2Network:
        unknown = set(options.extra) - set(OPTIONS)
        if unknown:
            raise ValidationError(f"brian2 backend: unknown option(s) {sorted(unknown)}; this backend takes none")
        return Brian2Network(plan(graph, options))

    def simulate(self, graph: Graph, options: CompileOptions, inputs: Mapping[str, Any],
                 record: Sequence[str]) -> dict[str, Any]:
        """Lower and run once; returns float64 numpy arrays (outputs and probes by name)."""
        return self.lower(graph, options).run(inputs, record=list(record))
