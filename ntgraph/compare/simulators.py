"""The simulators a comparison can run: names -> backends, options and routes, in one table.

Two routes:

* ``"direct"``: the prepared graph goes to the backend's
  ``simulate(graph, options, inputs, record)``;
* ``"nir"``: the core lowers the prepared graph with the ``"nir"`` backend
  (``get_backend("nir").lower(prepared, options)``) and hands the
  ``nir.NIRGraph`` to the peer's ``simulate_nir(nir_graph, inputs, dt=..., record=...)``;
  backends never import one another, the core carries the artefact between them.

``limitations`` lists what is known about a route in addition to what the
backend itself declares (its ``limitations`` attribute); the tags are read by
:mod:`ntgraph.compare.diagnose`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..compiler import CompileOptions
from ..errors import UnsupportedNodeError, ValidationError
from ..graph import Graph
from ..registry import get_backend

__all__ = ["SimulatorSpec", "SIMULATORS", "DEFAULT_SIMULATORS", "Run", "run_simulator", "nir_name", "simulator_spec",
           "register_simulator"]


@dataclass(frozen=True)
class SimulatorSpec:
    """One entry of :data:`SIMULATORS`.

    ``backend``: registry name; ``route``: ``"direct"`` or ``"nir"``;
    ``options``: backend options (``CompileOptions.extra``; for the NIR route,
    the options of the ``"nir"`` lowering); ``dtype_option``: the backend
    option that takes the comparison's ``dtype`` (None: the simulator has a
    fixed precision, ``precision``); ``limitations``: known tags of the route.
    """

    name: str
    backend: str
    route: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    dtype_option: Optional[str] = None
    precision: str = "float64"
    limitations: tuple[str, ...] = ()


#: Every simulator ``ntgraph compare`` knows, by name.
SIMULATORS: dict[str, SimulatorSpec] = {
    spec.name: spec
    for spec in (
        SimulatorSpec("torch", "torch", "direct", "ntgraph's torch backend (the reference semantics)",
                      dtype_option="dtype"),
        SimulatorSpec("onnx", "onnx", "direct", "ONNX export (sequence mode) run in onnxruntime",
                      options={"mode": "sequence"}, dtype_option="dtype"),
        SimulatorSpec("lava-float", "lava", "direct", "Lava's Loihi 2 simulator, floating-point models",
                      options={"precision": "float"}, precision="float64",
                      limitations=("timing:pipelined-only", "reset:no-subtract", "tau:uniform-only")),
        SimulatorSpec("lava-fixed", "lava", "direct", "Lava's Loihi 2 simulator, bit-accurate fixed-point models",
                      options={"precision": "fixed"}, precision="Loihi 2 fixed point",
                      limitations=("timing:pipelined-only", "reset:no-subtract", "tau:uniform-only", "quantisation")),
        SimulatorSpec("snntorch", "snntorch", "nir", "snnTorch through NIR and snntorch.import_nir.import_from_nir",
                      options={"one_to_one": "linear"}, precision="float32",
                      limitations=("nir:reset-mode", "nir:no-alif")),
        SimulatorSpec("norse", "norse", "nir", "Norse through NIR and norse.torch.from_nir",
                      options={"one_to_one": "linear"}, precision="float32",
                      limitations=("nir:reset-mode", "nir:no-alif")),
        SimulatorSpec("brian2", "brian2", "direct", "Brian2 equations from the IR, numpy code generation target"),
    )
}
#: The default list: every simulator, reference first.
DEFAULT_SIMULATORS: tuple[str, ...] = tuple(SIMULATORS)


def register_simulator(spec: SimulatorSpec) -> None:
    """Add (or replace) a simulator for this process, e.g. a third-party backend registered with
    :func:`ntgraph.registry.register_backend`.  It is not added to :data:`DEFAULT_SIMULATORS`."""
    if not isinstance(spec, SimulatorSpec):
        raise ValidationError(f"register_simulator: expected a SimulatorSpec, got {type(spec).__name__}")
    if spec.route not in ("direct", "nir"):
        raise ValidationError(f"SimulatorSpec '{spec.name}'.route: expected 'direct' or 'nir', got {spec.route!r}")
    SIMULATORS[spec.name] = spec


def simulator_spec(name: str) -> SimulatorSpec:
    """The table entry of ``name``; a clear error for an unknown name."""
    try:
        return SIMULATORS[name]
    except KeyError:
        raise ValidationError(
            f"simulator {name!r}: unknown; expected one of {', '.join(SIMULATORS)}"
        ) from None


def nir_name(node_id: str) -> str:
    """The NIR node name the ``"nir"`` backend gives an ntgraph id (``%`` and ``/`` percent-encoded)."""
    key = node_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" * len(key) if key in (".", "..") else key


@dataclass
class Run:
    """The outcome of running one simulator: arrays by ntgraph key, wall time, warnings, notes."""

    arrays: dict[str, np.ndarray]
    wall_s: float
    warnings: list[str]
    notes: list[str]
    limitations: tuple[str, ...]
    precision: str
    artefacts: dict[str, Any]


def _relevant(w: warnings.WarningMessage) -> bool:
    """Warnings raised by ntgraph's own code (core and backends), not the libraries' deprecation noise."""
    module = getattr(w.category, "__module__", "") or ""
    return module.split(".")[0] in ("ntgraph", "backends") and not issubclass(w.category, DeprecationWarning)


def _is_record_error(exc: Exception) -> bool:
    return isinstance(exc, (ValidationError, UnsupportedNodeError)) and "record" in str(exc)


def _direct(backend: Any, graph: Graph, options: CompileOptions, inputs: dict[str, np.ndarray],
            record: list[str], fallback: list[str], notes: list[str]) -> dict[str, np.ndarray]:
    if not hasattr(backend, "simulate"):
        raise ValidationError(f"backend {backend.name!r} cannot simulate (it only exports)")
    try:
        return backend.simulate(graph, options, dict(inputs), list(record))
    except Exception as exc:  # a backend that cannot record some probe still gives its outputs
        if not _is_record_error(exc):
            raise
        notes.append(f"could not record all probes ({exc}); recorded {', '.join(fallback) or 'outputs only'}")
        try:
            return backend.simulate(graph, options, dict(inputs), list(fallback))
        except Exception as exc2:
            if not _is_record_error(exc2):
                raise
            return backend.simulate(graph, options, dict(inputs), [])


def _via_nir(spec: SimulatorSpec, backend: Any, graph: Graph, options: CompileOptions,
             inputs: dict[str, np.ndarray], record: list[str], artefacts: dict[str, Any]) -> dict[str, np.ndarray]:
    if not hasattr(backend, "simulate_nir"):
        raise ValidationError(f"backend {backend.name!r} has no simulate_nir(nir_graph, inputs, dt, record)")
    nir_backend = get_backend("nir")
    nir_options = CompileOptions(dt=options.dt, discretization=options.discretization, timing=options.timing,
                                 extra=dict(spec.options))
    nir_graph = nir_backend.lower(graph, nir_options)
    artefacts["nir_node_types"] = {k: type(v).__name__ for k, v in getattr(nir_graph, "nodes", {}).items()}
    to_nir = {k: nir_name(k) for k in graph}
    from_nir = {v: k for k, v in to_nir.items()}
    recordable = getattr(backend, "variables", None)
    probes = []
    for key in record:
        pop, var = key.rsplit(".", 1)
        node = to_nir[pop]
        kind = artefacts["nir_node_types"].get(node)
        if recordable is not None and var not in recordable.get(kind, ()):
            continue
        probes.append(f"{node}.{var}")
    raw = backend.simulate_nir(nir_graph, {to_nir[k]: v for k, v in inputs.items()}, dt=options.dt, record=probes)
    out: dict[str, np.ndarray] = {}
    for key, arr in raw.items():
        node, sep, var = key.rpartition(".")
        if key in from_nir:
            out[from_nir[key]] = arr
        elif sep and node in from_nir:
            out[f"{from_nir[node]}.{var}"] = arr
        else:
            out[key] = arr
    return out


def run_simulator(spec: SimulatorSpec, graph: Graph, options: CompileOptions, inputs: dict[str, np.ndarray],
                  record: Sequence[str], dtype: str, artefacts: Optional[dict] = None,
                  extra_options: Optional[Mapping[str, Any]] = None) -> Run:
    """Run ``spec`` on the prepared ``graph``; raises what the backend raises (the caller decides skip vs fail).

    ``BackendNotFoundError`` means the simulator is not installed.  Warnings
    raised by ntgraph's code while it runs are collected, not shown.
    ``artefacts`` (filled in place, so it survives a failure): what the
    route produced on the way, e.g. ``"nir_node_types"``.  ``extra_options``
    override the table's ``options`` (backend options for the direct route,
    NIR lowering options for the NIR route).
    """
    if extra_options:
        spec = replace(spec, options={**spec.options, **extra_options})
    backend = get_backend(spec.backend)
    extra = dict(spec.options) if spec.route == "direct" else {}
    if spec.dtype_option is not None:
        extra[spec.dtype_option] = dtype
        precision = dtype
    else:
        precision = spec.precision if spec.route == "direct" else (getattr(backend, "precision", None) or spec.precision)
    run_options = CompileOptions(dt=options.dt, discretization=options.discretization, timing=options.timing, extra=extra)
    notes: list[str] = []
    artefacts = {} if artefacts is None else artefacts
    fallback = [k for k in record if k.rsplit(".", 1)[-1] == "spikes"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        if spec.route == "nir":
            arrays = _via_nir(spec, backend, graph, run_options, inputs, list(record), artefacts)
        else:
            arrays = _direct(backend, graph, run_options, inputs, list(record), fallback, notes)
        wall = time.perf_counter() - start
    seen: list[str] = []
    for w in caught:
        if _relevant(w):
            text = " ".join(str(w.message).split())
            if text not in seen:
                seen.append(text)
    limitations = tuple(dict.fromkeys((*spec.limitations, *getattr(backend, "limitations", ()))))
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    return Run(arrays, wall, seen, notes, limitations, precision, artefacts)
