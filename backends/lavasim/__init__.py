"""The Lava backend: run ntgraph networks on Lava's Loihi 2 simulator, in floating or fixed point.

``ntgraph.compile(graph, "lava", dt=1e-3, timing="pipelined")`` returns a
:class:`~backends.lavasim.runner.LavaRunner`; ``runner.run(inputs)`` returns
the same arrays as the torch backend (every Output and probe ``[T, batch, n]``).
Lava delays every connection by one step, so compile with
``timing="pipelined"`` (every projection's effective delay must be >= 1).
Backend options:

* ``precision``: ``"float"`` (default; Lava's ``floating_pt`` models, exactly
  ntgraph's equations) or ``"fixed"`` (Lava's bit-accurate ``fixed_pt`` models,
  after the :func:`ntgraph.passes.quantize.quantize` pass);
* ``quantize``: dict of options for that pass (``v_headroom``, ``input_scale``,
  ``input_range``, ``rate``); the pass also runs when it is part of the pipeline;
* ``record``: default probes (``"pop"``, ``"pop.v"``, ``"pop.i"``);
* ``batch_mode``: ``"replicate"`` (default; up to ``max_replicas`` samples side
  by side in one Lava network) or ``"sequential"`` (one sample after another);
* ``max_replicas`` (default 64).

lava-nc 0.10.0 needs a compatibility shim on Python 3.11
(:mod:`backends.lavasim.compat`), applied when this backend first uses lava.
See ``docs/lava.md``.
"""

from __future__ import annotations

from typing import Any

from ntgraph.compiler import CompileOptions
from ntgraph.errors import ValidationError
from ntgraph.graph import Graph
from ntgraph.passes.quantize import QuantizationReport, quantize

from .compat import import_lava
from .lowering import LOWERINGS, PRECISIONS, NetworkPlan, plan_network
from .resources import LOIHI2_LIMITS, Loihi2Limits, ResourceReport, loihi2_resources
from .runner import BATCH_MODES, LavaRunner

__all__ = [
    "LavaBackend",
    "LavaRunner",
    "LOWERINGS",
    "NetworkPlan",
    "plan_network",
    "loihi2_resources",
    "Loihi2Limits",
    "LOIHI2_LIMITS",
    "ResourceReport",
    "OPTIONS",
]

OPTIONS: dict[str, Any] = {
    "precision": "float",
    "quantize": None,
    "record": (),
    "batch_mode": "replicate",
    "max_replicas": 64,
}
QUANTIZE_OPTIONS = ("v_headroom", "input_scale", "input_range", "rate")


class LavaBackend:
    """Lowers a prepared graph to a :class:`LavaRunner` for Lava's Loihi 2 simulator."""

    name = "lava"

    def lower(self, graph: Graph, options: CompileOptions) -> LavaRunner:
        unknown = set(options.extra) - set(OPTIONS)
        if unknown:
            raise ValidationError(f"lava backend: unknown option(s) {sorted(unknown)}; expected some of {sorted(OPTIONS)}")
        extra = {**OPTIONS, **options.extra}
        precision = extra["precision"]
        if precision not in PRECISIONS:
            raise ValidationError(f"lava backend option precision: expected one of {PRECISIONS}, got {precision!r}")
        if extra["batch_mode"] not in BATCH_MODES:
            raise ValidationError(
                f"lava backend option batch_mode: expected one of {BATCH_MODES}, got {extra['batch_mode']!r}"
            )
        qopts = extra["quantize"]
        if qopts is not None:
            if not isinstance(qopts, dict) or set(qopts) - set(QUANTIZE_OPTIONS):
                raise ValidationError(
                    f"lava backend option quantize: expected a dict with keys among {QUANTIZE_OPTIONS}, got {qopts!r}"
                )
            if precision != "fixed":
                raise ValidationError("lava backend option quantize: only used with precision='fixed'")
        if precision == "fixed" and (qopts is not None or not isinstance(graph.attrs.get("quantization"), QuantizationReport)):
            graph = quantize(graph, dt=options.dt, discretization=options.discretization, **(qopts or {}))
        import_lava()
        plan = plan_network(graph, precision=precision, dt=options.dt, discretization=options.discretization)
        return LavaRunner(graph, plan, record=extra["record"], batch_mode=extra["batch_mode"],
                          max_replicas=extra["max_replicas"])

    def simulate(self, graph: Graph, options: CompileOptions, inputs: dict[str, Any],
                 record: list[str]) -> dict[str, Any]:
        """Lower and run once; returns numpy arrays (outputs and probes by name)."""
        return self.lower(graph, options).run(inputs, record=record)
