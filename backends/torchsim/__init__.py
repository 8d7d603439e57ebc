"""The PyTorch backend: simulate and train ntgraph networks with torch.

``ntgraph.compile(graph, "torch", dt=1e-3)`` returns a
:class:`~backends.torchsim.module.SimulationModule`.  Backend options:

* ``batch_first`` (bool, default False): inputs and outputs ``[batch, T, n]``;
* ``record`` (list of str): default probes, ``"pop"`` or ``"pop.var"``;
* ``surrogate`` (:class:`~backends.torchsim.surrogates.Surrogate`, default
  :class:`~backends.torchsim.surrogates.FastSigmoid` with slope 25);
* ``detach_reset`` (bool, default True): no gradient through the reset;
* ``dtype`` (torch dtype or its name, e.g. ``"float64"``; default float32) and ``device``;
  ``float16``/``bfloat16`` are checked by :func:`~backends.torchsim.precision.check_low_precision`
  (``low_precision_tolerance``, default 0.1; see ``docs/precision.md``).
"""

from __future__ import annotations

from typing import Any

import torch

from ntgraph.compiler import CompileOptions
from ntgraph.errors import ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse
from ntgraph.registry import LoweringTable

from .module import SimState, SimulationModule, SimulationResult
from .neurons import DYNAMICS, NeuronDynamics
from .precision import DEFAULT_TOLERANCE, check_low_precision
from .projections import DenseProjection, OneToOneProjection, ProjectionModule, SparseProjection
from .surrogates import ArcTan, FastSigmoid, SuperSpike, Surrogate, Triangle

__all__ = [
    "TorchBackend",
    "LOWERINGS",
    "SimulationModule",
    "SimulationResult",
    "SimState",
    "Surrogate",
    "FastSigmoid",
    "SuperSpike",
    "ArcTan",
    "Triangle",
]

#: IR type -> torch module class.  Neuron models map to dynamics, projections to projection modules;
#: Inputs and Outputs need no module.
LOWERINGS = LoweringTable("torch")
for _dyn in DYNAMICS:
    LOWERINGS.register(_dyn.model_type)(_dyn)
LOWERINGS.register(Dense)(DenseProjection)
LOWERINGS.register(Sparse)(SparseProjection)
LOWERINGS.register(OneToOne)(OneToOneProjection)
LOWERINGS.register(Input, Output)(None)

OPTIONS = {"batch_first": False, "record": (), "surrogate": None, "detach_reset": True, "dtype": None, "device": None,
           "precision": "float", "quantize": None, "low_precision_tolerance": DEFAULT_TOLERANCE}


class TorchBackend:
    """Lowers a prepared graph to a :class:`SimulationModule`."""

    name = "torch"

    def lower(self, graph: Graph, options: CompileOptions) -> SimulationModule:
        extra = dict(OPTIONS)
        unknown = set(options.extra) - set(OPTIONS)
        if unknown:
            raise ValidationError(
                f"torch backend: unknown option(s) {sorted(unknown)}; expected some of {sorted(OPTIONS)}"
            )
        extra.update(options.extra)
        surrogate = extra["surrogate"] if extra["surrogate"] is not None else FastSigmoid()
        if not isinstance(surrogate, Surrogate):
            raise ValidationError(f"torch backend option surrogate: expected a Surrogate object, got {surrogate!r}")
        precision = extra.pop("precision")
        quantize = extra.pop("quantize")
        tolerance = extra.pop("low_precision_tolerance")
        if precision == "loihi":
            from .loihi import lower_loihi

            return lower_loihi(graph, options, quantize=quantize, surrogate=surrogate,
                               detach_reset=bool(extra["detach_reset"]), record=extra["record"],
                               batch_first=extra["batch_first"], device=extra["device"])
        if precision != "float":
            raise ValidationError(f"torch backend option precision: expected 'float' or 'loihi', got {precision!r}")
        dtype = extra["dtype"] or torch.get_default_dtype()
        if isinstance(dtype, str):  # "float64" from the CLI (--set dtype=float64) or the torch-free core (ntgraph.compare)
            dtype = getattr(torch, dtype, dtype)
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise ValidationError(f"torch backend option dtype: expected a floating torch dtype, got {dtype!r}")
        check_low_precision(graph, options.dt, options.discretization, dtype, tolerance)  # float16/bfloat16 only

        dynamics: dict[str, NeuronDynamics] = {}
        projections: dict[str, ProjectionModule] = {}
        for node_id, payload in graph.items():
            if isinstance(payload, Population):
                cls = LOWERINGS.lookup(payload.model, node_id)
                dynamics[node_id] = cls(node_id, payload, dt=options.dt, discretization=options.discretization,
                                        surrogate=surrogate, detach_reset=bool(extra["detach_reset"]))
            elif isinstance(payload, Projection):
                cls = LOWERINGS.lookup(payload, node_id)
                projections[node_id] = cls(node_id, payload, graph.meta(node_id)["constraints"])
            else:
                LOWERINGS.lookup(payload, node_id)
        module = SimulationModule(graph, options, dynamics, projections,
                                  batch_first=extra["batch_first"], record=extra["record"])
        return module.to(dtype=dtype, device=extra["device"])

    def train(self, graph: Graph, options: CompileOptions, data: Any, *, output: str, task: str = "classification",
              epochs: int = 5, batch_size: int = 32, lr: float = 5e-3, algorithm: str = "bptt", seed: int = 0,
              progress: bool = True, checkpoint_dir: Any = None, resume: bool = False) -> tuple[Graph, dict[str, float]]:
        """Train on ``data`` (``Splits`` of train/val/test) and return the trained IR graph and test metrics.

        ``task``: ``"classification"`` (labels; time-averaged cross-entropy) or
        ``"regression"`` (per-step targets; MSE).  ``algorithm``: ``"bptt"``,
        ``"tbptt:K"`` (window K) or ``"eprop"``.  The backend-neutral entry point
        is :func:`ntgraph.train`.  ``checkpoint_dir``/``resume``: the trainer's
        checkpoints, and continuing from the newest one (Ctrl-C saves and raises
        :class:`~ntgraph.errors.TrainingInterrupted`).
        """
        from . import learning as L

        torch.manual_seed(seed)
        if task not in ("classification", "regression"):
            raise ValidationError(f"train task: expected 'classification' or 'regression', got {task!r}")
        if algorithm == "bptt":
            algo: Any = L.BPTT()
        elif algorithm == "eprop":
            algo = L.EProp()
        elif algorithm.startswith("tbptt:") and algorithm[6:].isdigit():
            algo = L.TBPTT(window=int(algorithm[6:]))
        else:
            raise ValidationError(f"train algorithm: expected 'bptt', 'tbptt:K' or 'eprop', got {algorithm!r}")
        module = self.lower(graph, options)
        objective = (L.CrossEntropyOverTime(output=output, reduce="mean") if task == "classification"
                     else L.MSE(output=output))
        trainer = L.Trainer(module, objective, optimizer=lambda p: torch.optim.Adam(p, lr=lr), algorithm=algo,
                            seed=seed, progress=progress, checkpoint_dir=checkpoint_dir)
        if resume and checkpoint_dir is not None:
            trainer.resume(checkpoint_dir)
        history = trainer.fit(data.train, data.val, epochs=epochs, batch_size=batch_size)
        metrics = {f"test_{k}": float(v) for k, v in trainer.evaluate(data.test, batch_size=256).items()}
        metrics["epochs"] = float(len(history))
        return module.to_graph(), metrics

    def estimate_memory(self, graph: Graph, **kwargs: Any) -> tuple[dict[str, int], list[str]]:
        """Predicted memory of the module ``lower`` would build (``ntgraph.estimate_memory``; see ``memory.py``)."""
        from .memory import estimate

        unknown = set(kwargs["options"]) - set(OPTIONS)
        if unknown:
            raise ValidationError(f"torch backend: unknown option(s) {sorted(unknown)}; expected some of {sorted(OPTIONS)}")
        return estimate(graph, **kwargs)

    def simulate(self, graph: Graph, options: CompileOptions, inputs: dict[str, Any],
                 record: list[str]) -> dict[str, Any]:
        """Lower, run without gradients, and return numpy arrays (outputs and probes by name)."""
        module = self.lower(graph, options)
        with torch.no_grad():
            result = module(inputs, record=record)
        arrays = {**result.outputs, **result.records}
        return {k: v.detach().cpu().double().numpy() for k, v in arrays.items()}
