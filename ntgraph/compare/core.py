"""``compare()``: run one network on several simulators and measure how far each is from the reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..compiler import CompileOptions, prepare
from ..errors import BackendNotFoundError, FileFormatError, NtgraphError, ShapeError, ValidationError
from ..graph import Graph
from ..ir import Population
from ..registry import get_backend
from . import metrics as M
from .diagnose import Context, diagnose
from .report import ComparisonReport, SimulatorResult
from .simulators import DEFAULT_SIMULATORS, SIMULATORS, Run, run_simulator, simulator_spec

__all__ = ["compare", "load_graph", "DTYPES", "TOLERANCES"]

DTYPES = ("float64", "float32")
#: Default atol = rtol on analog values, by the simulator's precision (anything else: fixed point).
TOLERANCES = {"float64": 1e-9, "float32": 1e-4, "fixed": 1e-2}


def _tolerance(precision: str, given: Optional[float]) -> float:
    if given is not None:
        return float(given)
    return TOLERANCES.get(precision, TOLERANCES["fixed"])
GraphLike = Union[Graph, str, "os.PathLike[str]"]


def load_graph(source: GraphLike) -> Graph:
    """A Graph as is, or a file: ntgraph's ``.ntg`` or any format with a registered importer (``.nir``)."""
    if isinstance(source, Graph):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise ValidationError(f"graph: expected an ntgraph Graph or a file path, got {type(source).__name__}")
    from ..io import load
    from ..registry import get_importer

    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in ("", ".ntg"):
        return load(path)
    if not path.exists():
        raise FileFormatError(f"{path}: does not exist")
    return get_importer(suffix)(path)


def _inputs(graph: Graph, inputs: Any) -> tuple[dict[str, np.ndarray], int, int]:
    if not isinstance(inputs, Mapping):
        if len(graph.inputs) != 1:
            raise ValidationError(f"inputs: the graph has {len(graph.inputs)} Inputs {graph.inputs}; pass a dict of arrays by name")
        inputs = {graph.inputs[0]: inputs}
    unknown = [k for k in inputs if k not in graph.inputs]
    missing = [k for k in graph.inputs if k not in inputs]
    if unknown or missing:
        raise ValidationError(f"inputs: expected arrays for {graph.inputs}, got {sorted(inputs)}")
    out: dict[str, np.ndarray] = {}
    tb = None
    for name in graph.inputs:
        x = np.asarray(inputs[name])
        if x.dtype.kind not in "biuf":
            raise ValidationError(f"Input '{name}': expected a numeric array, got dtype {x.dtype}")
        size = graph[name].size
        if x.ndim != 3 or x.shape[-1] != size:
            raise ShapeError(f"Input '{name}': expected an array of shape [T, batch, {size}], got shape {x.shape}")
        if tb is None:
            tb = x.shape[:2]
        elif x.shape[:2] != tb:
            raise ShapeError(f"Input '{name}': has (T, batch) = {x.shape[:2]}, expected {tb} like the other inputs")
        out[name] = x.astype(np.float64)
    if tb is None or tb[0] < 1 or tb[1] < 1:
        raise ValidationError(f"inputs: expected at least one step and one sample, got (T, batch) = {tb}")
    return out, int(tb[0]), int(tb[1])


def _simulator_list(simulators: Union[str, Sequence[str]], reference: str) -> list[str]:
    names = [s.strip() for s in simulators.split(",")] if isinstance(simulators, str) else [str(s) for s in simulators]
    names = [n for n in names if n]
    for n in [reference, *names]:
        simulator_spec(n)
    return list(dict.fromkeys([reference, *names]))


def _probes(graph: Graph, extra: Optional[Sequence[str]]) -> list[str]:
    keys: list[str] = []
    for pop in graph.attrs["order"]:
        model = graph[pop].model
        keys.append(f"{pop}.{model.output_var}")
        if "v" in model.state_vars and model.output_var != "v":
            keys.append(f"{pop}.v")
    for spec in extra or ():
        key = spec if "." in spec else f"{spec}.{graph[spec].model.output_var}"
        keys.append(key)
    return list(dict.fromkeys(keys))


def _complete(graph: Graph, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fill a missing ``pop.<output var>`` probe from an Output of that population (same array)."""
    out = dict(arrays)
    for o in graph.outputs:
        src = graph.source(o)
        if o in arrays and isinstance(graph[src], Population):
            key = f"{src}.{graph[src].model.output_var}"
            out.setdefault(key, arrays[o])
    return out


def _readout(graph: Graph, readout: Optional[str]) -> Optional[str]:
    if readout is not None:
        if readout not in graph.outputs:
            raise ValidationError(f"readout {readout!r}: not an Output of the graph; outputs: {graph.outputs}")
        return readout
    return graph.outputs[0] if graph.outputs else None


def _is_spiking_output(graph: Graph, out: str) -> bool:
    src = graph[graph.source(out)]
    return isinstance(src, Population) and bool(src.model.spiking)


def _metrics(graph: Graph, ref: dict, sim: dict, *, dt: float, spike_keys: list[str], analog_keys: list[str],
             outputs: list[str], tau: float, atol: float, rtol: float) -> tuple[dict, Optional[M.Divergence], list, list]:
    common = [k for k in ref if k in sim and np.shape(sim[k]) == np.shape(ref[k])]
    missing = [k for k in ref if k not in common]
    s_keys = [k for k in spike_keys if k in common]
    a_keys = [k for k in analog_keys if k in common]
    o_keys = [o for o in outputs if o in common]
    m: dict[str, Any] = {}
    if s_keys:
        a = np.concatenate([ref[k].reshape(ref[k].shape[0], -1) for k in s_keys], axis=1)
        b = np.concatenate([sim[k].reshape(sim[k].shape[0], -1) for k in s_keys], axis=1)
        m["spike_agreement"] = M.spike_agreement(a, b)
        m["spike_count_correlation"] = M.spike_count_correlation(a, b)
        m["van_rossum"] = float(np.mean(M.van_rossum_distance(a, b, dt, tau)))
        m["spikes_reference"] = float(a.sum())
        m["spikes_simulator"] = float(b.sum())
    v_keys = [k for k in a_keys if k.endswith(".v")]
    m["max_voltage_error"] = M.max_abs_error(ref, sim, v_keys)
    analog_outputs = [o for o in o_keys if not _is_spiking_output(graph, o)]
    m["max_output_error"] = M.max_abs_error(ref, sim, analog_outputs)
    # agreement: every spike entry (exact) and every entry of a non-spiking Output (within the tolerance)
    spike_good = sum(int((ref[k] == sim[k]).sum()) for k in s_keys)
    spike_total = sum(ref[k].size for k in s_keys)
    out_good = out_total = 0
    for o in analog_outputs:
        a, b = ref[o], sim[o]
        with np.errstate(invalid="ignore"):
            ok = np.abs(b - a) <= atol + rtol * np.abs(a)
        out_good += int(ok.sum())
        out_total += ok.size
    if analog_outputs:
        m["output_agreement"] = out_good / out_total if out_total else 1.0
    if s_keys or analog_outputs:
        m["agreement"] = (spike_good + out_good) / (spike_total + out_total) if spike_total + out_total else 1.0
    # divergence: spikes exactly; analog values of non-spiking populations and analog outputs within the tolerance
    # (a spiking population's voltage shows up in its spikes and in max |dv|)
    spiking_pops = {k[: -len(".spikes")] for k in spike_keys}
    div_analog = [k for k in a_keys if k.rsplit(".", 1)[0] not in spiking_pops] + \
        [o for o in analog_outputs if o not in a_keys]
    divergence = M.first_divergence(ref, sim, dt, spike_keys=s_keys + [o for o in o_keys if o not in analog_outputs],
                                    analog_keys=list(dict.fromkeys(div_analog)), atol=atol, rtol=rtol)
    if v_keys:
        stop = divergence.step if divergence is not None else None
        m["max_voltage_error_before_divergence"] = M.max_abs_error(
            {k: ref[k][:stop] for k in v_keys}, {k: sim[k][:stop] for k in v_keys}, v_keys) if stop != 0 else 0.0
    return m, divergence, common, missing


def _quantization(spec_name: str, graph: Graph, options: CompileOptions, extra: Mapping[str, Any]) -> Any:
    """The quantisation pass's report, for simulators that quantise (the pass Lava's fixed point runs, same options)."""
    if "quantisation" not in SIMULATORS[spec_name].limitations:
        return None
    qopts = {**SIMULATORS[spec_name].options, **extra}.get("quantize") or {}
    try:
        from ..passes.quantize import quantize

        return quantize(graph, dt=options.dt, discretization=options.discretization, **qopts).attrs.get("quantization")
    except (NtgraphError, TypeError):
        return None


def _compare_one(name: str, graph: Graph, options: CompileOptions, xs: dict[str, np.ndarray], probes: list[str],
                 dtype: str, extra: Mapping[str, Any], *, ref_arrays: dict, against: dict, spike_keys: list[str],
                 analog_keys: list[str], tau: float, atol: Optional[float], rtol: Optional[float],
                 score: Any) -> SimulatorResult:
    """Run one simulator, measure it against the reference and diagnose it; never raises for the simulator's faults."""
    spec = SIMULATORS[name]
    res = SimulatorResult(name, spec.description, spec.backend, spec.route, "ok", precision=spec.precision,
                          limitations=tuple(spec.limitations))
    run: Optional[Run] = None
    artefacts: dict = {}
    try:
        run = run_simulator(spec, graph, options, xs, probes, dtype, artefacts, extra_options=extra)
    except BackendNotFoundError as exc:
        res.status, res.reason = "skipped", str(exc)
        return res
    except Exception as exc:  # noqa: BLE001 - a simulator's own bug must not stop the comparison; it is reported
        res.status = "failed"
        res.reason = str(exc) if isinstance(exc, NtgraphError) else f"{type(exc).__name__}: {exc}"
        try:  # the backend's declared limitations explain failures too
            res.limitations = tuple(dict.fromkeys((*spec.limitations, *getattr(get_backend(spec.backend), "limitations", ()))))
        except Exception:  # noqa: BLE001 - a backend that failed may fail to load again; the table's tags remain
            pass
    if run is not None:
        arrays = _complete(graph, run.arrays)
        res.precision, res.wall_s, res.per_step_s = run.precision, run.wall_s, run.wall_s / len(next(iter(xs.values())))
        res.warnings, res.notes, res.limitations, res.arrays = run.warnings, run.notes, run.limitations, arrays
        a_tol, r_tol = _tolerance(run.precision, atol), _tolerance(run.precision, rtol)
        m, div, common, missing = _metrics(graph, against, arrays, dt=options.dt, spike_keys=spike_keys,
                                           analog_keys=analog_keys, outputs=list(graph.outputs), tau=tau,
                                           atol=a_tol, rtol=r_tol)
        m["atol"], m["rtol"] = a_tol, r_tol
        res.metrics, res.divergence, res.keys_compared, res.keys_missing = m, div, common, missing
        accuracy = score(arrays)
        if accuracy is not None:
            res.metrics["accuracy"] = accuracy
        if m.get("agreement") is None:
            res.status = "failed"
            res.reason = (f"produced none of the reference's outputs or probes (got {sorted(arrays)}, "
                          f"expected some of {sorted(against)})")
    quant = _quantization(name, graph, options, extra)
    if quant is not None:
        res.metrics.update(weights_clipped=quant.clipped, weights_zeroed=quant.zeroed, weights_quantized=quant.n_weights)
    ctx = Context(
        simulator=name, graph=graph, options=options, tags=frozenset(res.limitations), status=res.status,
        diverged=res.divergence is not None, reference=ref_arrays, arrays=res.arrays, divergence=res.divergence,
        max_voltage_error=res.metrics.get("max_voltage_error"),
        max_voltage_error_before=res.metrics.get("max_voltage_error_before_divergence"),
        artefacts=artefacts, quantization=quant, inputs=xs, reason=res.reason,
    )
    res.diagnoses = diagnose(ctx)
    return res


def compare(
    graph_or_file: GraphLike,
    inputs: Union[np.ndarray, Mapping[str, np.ndarray]],
    simulators: Union[str, Sequence[str]] = DEFAULT_SIMULATORS,
    *,
    dt: float,
    timing: str = "sync",
    discretization: str = "euler",
    labels: Optional[np.ndarray] = None,
    reference: str = "torch",
    record: Optional[Sequence[str]] = None,
    dtype: str = "float64",
    van_rossum_tau: float = 10e-3,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    readout: Optional[str] = None,
    backend_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> ComparisonReport:
    """Run ``graph_or_file`` on ``simulators`` and compare each with ``reference``.

    ``inputs``: one array ``[T, batch, n]`` (or a dict by Input name).
    ``simulators``: names from :data:`~ntgraph.compare.simulators.SIMULATORS`
    (a list or ``"torch,onnx,brian2"``); one that is not installed is skipped
    with the reason, one that cannot run this network is reported as failed
    with the reason.  ``dt`` (seconds), ``timing`` and ``discretization`` are
    the compile options every simulator runs under.  ``labels``: one class
    per sample, for the accuracy of ``readout`` (default: the first Output).
    ``dtype``: arithmetic of the simulators that take one (torch, onnx).
    ``van_rossum_tau``: the van Rossum kernel's time constant (s).
    ``atol``/``rtol``: tolerance on analog values (readouts, non-spiking
    populations) for the first divergence; by default both are
    :data:`TOLERANCES` of the simulator's precision (1e-9 for float64, 1e-4 for
    float32, 1e-2 for fixed point).
    ``record``: extra probes; every population's output and ``v`` are always recorded.
    ``backend_options``: per simulator name, options added to the table's
    (e.g. ``{"lava-fixed": {"quantize": {"input_scale": 256}}}``; for the NIR
    route they go to the NIR lowering).
    """
    if dtype not in DTYPES:
        raise ValidationError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if not (van_rossum_tau > 0):
        raise ValidationError(f"van_rossum_tau: expected a positive time constant in seconds, got {van_rossum_tau!r}")
    graph = load_graph(graph_or_file)
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing)
    names = _simulator_list(simulators, reference)
    backend_options = dict(backend_options or {})
    for name, opts in backend_options.items():
        simulator_spec(name)
        if not isinstance(opts, Mapping):
            raise ValidationError(f"backend_options[{name!r}]: expected a dict of options, got {opts!r}")
    xs, steps, batch = _inputs(graph, inputs)
    readout_id = _readout(graph, readout)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (batch,):
            raise ShapeError(f"labels: expected one label per sample, shape ({batch},), got {labels.shape}")
        if readout_id is None:
            raise ValidationError("labels: the graph has no Output to read a class from")
    prepared = prepare(graph, options)
    probes = _probes(prepared, record)
    spiking = [p for p in prepared.attrs["order"] if prepared[p].model.spiking]
    spike_keys = [f"{p}.spikes" for p in spiking]
    analog_keys = [k for k in probes if k not in spike_keys]
    outputs = list(prepared.outputs)

    settings = {
        "dt": options.dt, "timing": timing, "discretization": discretization, "steps": steps, "batch": batch,
        "dtype": dtype, "reference": reference, "van_rossum_tau_s": float(van_rossum_tau),
        "atol": None if atol is None else float(atol), "rtol": None if rtol is None else float(rtol),
        "readout": readout_id,
    }
    thresholds = {p: np.asarray(prepared[p].model.v_th, dtype=np.float64).tolist() for p in spiking
                  if getattr(prepared[p].model, "v_th", None) is not None}
    report = ComparisonReport(graph.name, settings, [], labels_given=labels is not None, spike_keys=spike_keys,
                              thresholds=thresholds)

    def result_for(name: str, status: str) -> SimulatorResult:
        spec = SIMULATORS[name]
        return SimulatorResult(name, spec.description, spec.backend, spec.route, status, precision=spec.precision)

    def score(arrays: dict) -> Optional[float]:
        if labels is None or readout_id is None or readout_id not in arrays:
            return None
        return M.accuracy(arrays[readout_id], labels, _is_spiking_output(prepared, readout_id))

    # ---- the reference must run
    try:
        ref_run = run_simulator(SIMULATORS[reference], prepared, options, xs, probes, dtype,
                                extra_options=backend_options.get(reference))
    except NtgraphError as exc:
        raise type(exc)(f"reference simulator {reference!r} could not run: {exc}") from exc
    ref_arrays = _complete(prepared, ref_run.arrays)
    ref = result_for(reference, "reference")
    ref.precision, ref.wall_s, ref.per_step_s = ref_run.precision, ref_run.wall_s, ref_run.wall_s / steps
    ref.warnings, ref.notes, ref.limitations, ref.arrays = ref_run.warnings, ref_run.notes, ref_run.limitations, ref_arrays
    if labels is not None:
        ref.metrics["accuracy"] = score(ref_arrays)
    report.results.append(ref)

    # ---- every other simulator
    for name in names[1:]:
        report.results.append(_compare_one(
            name, prepared, options, xs, probes, dtype, backend_options.get(name, {}), ref_arrays=ref_arrays,
            against={k: v for k, v in ref_arrays.items() if k in probes or k in outputs}, spike_keys=spike_keys,
            analog_keys=analog_keys, tau=van_rossum_tau, atol=atol, rtol=rtol, score=score))
    return report
