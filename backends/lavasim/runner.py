"""Running a :class:`~backends.lavasim.lowering.NetworkPlan` on Lava's Loihi 2 simulator.

:class:`LavaRunner` is what ``ntgraph.compile(graph, "lava", ...)`` returns.
``runner.run(inputs)`` builds the Lava processes, runs them on
``Loihi2SimCfg`` (``select_tag="floating_pt"`` or ``"fixed_pt"``), reads the
results back once from memory-mapped files, and always stops the Lava runtime
(its worker processes) before returning, also on errors.

Batches: Lava has no batch dimension.  ``batch_mode="replicate"`` (default)
builds ``R`` copies of the network side by side in the same processes (each
population ``R`` times as large, block-diagonal Sparse weights) and runs
``max_replicas`` samples at a time; ``batch_mode="sequential"`` builds the
network once and runs the samples one after another, resetting ``u``, ``v``
and the synaptic buffers with ``Var.set`` in between.  Both give the same
numbers as running each sample alone.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp

from ntgraph.errors import ShapeError, ValidationError
from ntgraph.graph import Graph

from .compat import import_lava
from .lowering import ConnectionPlan, NetworkPlan, NeuronPlan

__all__ = ["LavaRunner", "BATCH_MODES"]

BATCH_MODES = ("replicate", "sequential")
InputsLike = Union[np.ndarray, Mapping[str, Any]]


class LavaRunner:
    """A compiled network for Lava's Loihi 2 simulator.

    ``run(inputs, record=...)`` takes one array ``[T, batch, size]`` per Input
    (a dict by name, or one array when the graph has one Input) and returns a
    dict of numpy arrays ``[T, batch, n]``: every Output by name and every probe
    (``"pop"`` for its output, ``"pop.v"``, ``"pop.i"``) by ``"pop.var"``, in
    the model's units (fixed point read back through the quantisation scales).
    """

    def __init__(self, graph: Graph, plan: NetworkPlan, *, record: Sequence[str] = (),
                 batch_mode: str = "replicate", max_replicas: int = 64) -> None:
        if batch_mode not in BATCH_MODES:
            raise ValidationError(f"lava backend option batch_mode: expected one of {BATCH_MODES}, got {batch_mode!r}")
        if isinstance(max_replicas, bool) or not isinstance(max_replicas, (int, np.integer)) or max_replicas < 1:
            raise ValidationError(f"lava backend option max_replicas: expected a positive integer, got {max_replicas!r}")
        self.graph = graph
        self.plan = plan
        self.precision = plan.precision
        self.batch_mode = batch_mode
        self.max_replicas = int(max_replicas)
        self.default_record = self._parse_record(record)

    # ------------------------------------------------------------------ public
    @property
    def quantization(self) -> Any:
        """The :class:`~ntgraph.passes.quantize.QuantizationReport` (fixed point), else None."""
        return self.graph.attrs.get("quantization")

    def resources(self) -> Any:
        """The Loihi 2 resource estimate of this network (:func:`backends.lavasim.resources.loihi2_resources`)."""
        from .resources import loihi2_resources

        return loihi2_resources(self.graph)

    def run(self, *inputs: InputsLike, record: Optional[Sequence[str]] = None, raw: bool = False) -> dict[str, np.ndarray]:
        """Simulate ``T`` steps of every sample; returns outputs and probes ``[T, batch, n]`` (float64).

        ``raw=True`` returns Lava's own values instead of model units: in fixed
        point the integers ``v`` and ``u`` (int64), in floating point the
        rescaled ``v - v_reset`` and ``u`` of Lava's LIF (see :mod:`backends.lavasim.lowering`).
        """
        xs = self._check_inputs(inputs)
        probes = self.default_record if record is None else self._parse_record(record)
        first = next(iter(xs.values()))
        steps, batch = int(first.shape[0]), int(first.shape[1])
        wanted = self._wanted(probes)
        if self.batch_mode == "replicate":
            parts = []
            for start in range(0, batch, self.max_replicas):
                chunk = {k: v[:, start:start + self.max_replicas] for k, v in xs.items()}
                parts.append(self._run(chunk, steps, min(self.max_replicas, batch - start), wanted,
                                       sequential=False, raw=raw))
            values = {k: np.concatenate([p[k] for p in parts], axis=1) for k in wanted}
        else:
            values = self._run(xs, steps, 1, wanted, sequential=True, raw=raw)
        results: dict[str, np.ndarray] = {}
        for out_id, src in self.plan.outputs.items():
            if src in xs:
                results[out_id] = np.array(xs[src], dtype=np.float64)
            else:
                results[out_id] = values[(src, self._output_var(src))]
        for key, pop, var in probes:
            results[key] = values[(pop, var)]
        return results

    __call__ = run

    def close(self) -> None:
        """Nothing to release: every ``run`` stops its Lava runtime before returning."""

    def __enter__(self) -> "LavaRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<LavaRunner '{self.graph.name}' precision={self.precision} batch_mode={self.batch_mode}: "
                f"{len(self.plan.neurons)} LIF, {len(self.plan.connections)} connections>")

    # ------------------------------------------------------------------ checks
    def _output_var(self, pop: str) -> str:
        return "spikes" if self.plan.neurons[pop].spiking else "v"

    def _parse_record(self, record: Optional[Sequence[str]]) -> list[tuple[str, str, str]]:
        if record is None:
            return []
        if isinstance(record, str):
            record = [record]
        probes = []
        for spec in record:
            if spec in self.plan.neurons:
                pop, var = spec, self._output_var(spec)
            elif "." in spec and spec.rsplit(".", 1)[0] in self.plan.neurons:
                pop, var = spec.rsplit(".", 1)
            else:
                raise ValidationError(
                    f"record {spec!r}: expected a population id or 'population.variable'; populations: "
                    f"{', '.join(self.plan.neurons)}"
                )
            neuron = self.plan.neurons[pop]
            allowed = ("spikes", "v") if neuron.kind in ("LIF", "IF") else (("spikes", "i", "v") if neuron.kind == "CubaLIF" else ("v",))
            if var not in allowed:
                raise ValidationError(
                    f"record {spec!r}: Population '{pop}' ({neuron.kind}) has no variable {var!r}; expected one of "
                    f"{', '.join(allowed)}"
                )
            if var == "i" and np.any(neuron.i_scale == 0):
                raise ValidationError(
                    f"record {spec!r}: Population '{pop}' has r = 0 for some neurons, so Lava's u carries no trace of "
                    f"their current i; expected r != 0 to record i"
                )
            probes.append((f"{pop}.{var}", pop, var))
        return probes

    def _check_inputs(self, inputs: tuple) -> dict[str, np.ndarray]:
        names = list(self.plan.inputs)
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            given = dict(inputs[0])
            unknown, missing = set(given) - set(names), [i for i in names if i not in given]
            if unknown or missing:
                raise ValidationError(
                    f"inputs: expected arrays for {names}, got names {sorted(given)}"
                    + (f" (unknown: {sorted(unknown)})" if unknown else "") + (f" (missing: {missing})" if missing else "")
                )
        else:
            if len(inputs) != len(names):
                raise ValidationError(f"inputs: expected {len(names)} array(s), one per Input {names}, got {len(inputs)}")
            given = dict(zip(names, inputs))
        if not names:
            raise ValidationError("inputs: the graph has no Input; nothing to simulate")
        out: dict[str, np.ndarray] = {}
        tb = None
        for name in names:
            x = given[name]
            x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
            size = self.plan.inputs[name]
            if x.ndim != 3 or x.shape[-1] != size:
                raise ShapeError(f"Input '{name}': expected an array of shape [T, batch, {size}], got shape {x.shape}")
            if x.dtype.kind not in "biuf":
                raise ValidationError(f"Input '{name}': expected real numbers, got dtype {x.dtype}")
            if tb is None:
                tb = x.shape[:2]
            elif x.shape[:2] != tb:
                raise ShapeError(f"Input '{name}': has (T, batch) = {x.shape[:2]}, expected {tb} like the other inputs")
            if x.shape[0] < 1 or x.shape[1] < 1:
                raise ShapeError(f"Input '{name}': expected T >= 1 and batch >= 1, got shape {x.shape}")
            out[name] = x.astype(np.float64)
        return out

    def _wanted(self, probes: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        wanted = [(src, self._output_var(src)) for src in self.plan.outputs.values() if src in self.plan.neurons]
        wanted += [(pop, var) for _, pop, var in probes]
        return list(dict.fromkeys(wanted))

    # ------------------------------------------------------------------ lava
    def _run(self, xs: dict[str, np.ndarray], steps: int, replicas: int, wanted: list[tuple[str, str]],
             *, sequential: bool, raw: bool) -> dict[tuple[str, str], np.ndarray]:
        import_lava()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        batch = next(iter(xs.values())).shape[1]
        fixed = self.precision == "fixed"
        with tempfile.TemporaryDirectory(prefix="ntgraph-lava-") as tmp:
            net = _LavaNetwork(self.plan, steps, replicas, wanted, tmp)
            if not net.recorders:
                return {}
            cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt",
                               exception_proc_model_map=net.model_map)
            anchor = net.recorders[0][1]
            dtype = np.int64 if (raw and fixed) else np.float64
            out = {key: np.zeros((steps, batch, self.plan.neurons[key[0]].size), dtype=dtype) for key in wanted}
            started = False
            try:
                rounds = range(batch) if sequential else [None]
                for b in rounds:
                    sel = slice(None) if b is None else slice(b, b + 1)
                    for name, x in xs.items():
                        net.write_input(name, self._encode_input(name, x[:, sel]))
                    if started:
                        net.reset()
                    anchor.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                    started = True
                    for key, data in net.read().items():
                        out[key][:, sel] = self._decode(key, data, raw)
            finally:
                if started:
                    anchor.stop()
            return out

    def _encode_input(self, name: str, x: np.ndarray) -> np.ndarray:
        """``[T, R, F]`` -> ``[T, R*F]``; fixed point: integers ``round(x * input_scale)``."""
        flat = x.reshape(x.shape[0], -1)
        if self.precision == "float":
            return flat
        scale = self.plan.input_scale.get(name, 1.0)
        q = np.round(flat * scale)
        limit = (1 << 23) - 1
        if np.any(np.abs(q) > limit):
            raise ValidationError(
                f"Input '{name}': values up to {np.max(np.abs(flat)):g} times input_scale={scale:g} exceed Loihi's "
                f"24-bit graded spikes; lower the quantize option input_scale"
            )
        return q

    def _decode(self, key: tuple[str, str], data: np.ndarray, raw: bool) -> np.ndarray:
        """Lava values ``[T, R*n]`` -> model units ``[T, R, n]`` (unchanged with ``raw``)."""
        pop, var = key
        neuron: NeuronPlan = self.plan.neurons[pop]
        data = data.reshape(data.shape[0], -1, neuron.size)
        if raw:
            return data
        data = data.astype(np.float64)
        if var == "spikes":
            return data
        if var == "v":
            return data / neuron.v_scale + neuron.v_offset
        return data / neuron.i_scale


class _LavaNetwork:
    """The Lava processes of one plan, for ``replicas`` samples side by side, with their files in ``tmp``."""

    def __init__(self, plan: NetworkPlan, steps: int, replicas: int, wanted: list[tuple[str, str]], tmp: str) -> None:
        from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401  (lava imported by the caller)
        from lava.proc.dense.models import (PyDelayDenseModelBitAcc, PyDelayDenseModelFloat, PyDenseModelBitAcc,
                                            PyDenseModelFloat)
        from lava.proc.dense.process import DelayDense, Dense
        from lava.proc.io.source import PySendModelFixed, PySendModelFloat, RingBuffer
        from lava.proc.lif.models import PyLifModelBitAcc, PyLifModelFloat
        from lava.proc.lif.process import LIF
        from lava.proc.sparse.models import (PyDelaySparseModelBitAcc, PyDelaySparseModelFloat, PySparseModelBitAcc,
                                             PySparseModelFloat)
        from lava.proc.sparse.process import DelaySparse, Sparse
        from lava.utils.weightutils import SignMode

        from .processes import MODELS, BulkProbe, BulkRecorder, BulkSource

        fixed = plan.precision == "fixed"
        self.plan, self.steps, self.replicas = plan, steps, replicas
        self.model_map: dict[Any, type] = {}
        dtype = "int32" if fixed else "float64"
        models = {
            LIF: PyLifModelBitAcc if fixed else PyLifModelFloat,
            Dense: PyDenseModelBitAcc if fixed else PyDenseModelFloat,
            DelayDense: PyDelayDenseModelBitAcc if fixed else PyDelayDenseModelFloat,
            Sparse: PySparseModelBitAcc if fixed else PySparseModelFloat,
            DelaySparse: PyDelaySparseModelBitAcc if fixed else PyDelaySparseModelFloat,
            RingBuffer: PySendModelFixed if fixed else PySendModelFloat,
        }

        def add(proc: Any) -> Any:
            cls = type(proc)
            self.model_map[proc] = models[cls] if cls in models else MODELS[(cls, plan.precision)]
            return proc

        def tile(a: np.ndarray) -> np.ndarray:
            return np.tile(np.asarray(a), replicas)

        def path(name: str) -> str:
            return os.path.join(tmp, f"{len(os.listdir(tmp))}-{name.replace(os.sep, '_')[:40]}.bin")

        def memmap(p: str, n: int) -> np.memmap:
            return np.memmap(p, dtype=np.dtype(dtype), mode="w+", shape=(steps, n))

        self.lif: dict[str, Any] = {}
        for pop, nrn in plan.neurons.items():
            as_num = (lambda x: int(x)) if fixed else (lambda x: float(x))
            vth = as_num(nrn.vth) if np.isfinite(nrn.vth) else float("inf")
            self.lif[pop] = add(LIF(shape=(replicas * nrn.size,), u=0, v=tile(nrn.v_init), du=as_num(nrn.du),
                                    dv=as_num(nrn.dv), bias_mant=tile(nrn.bias_mant), bias_exp=tile(nrn.bias_exp),
                                    vth=vth, name=f"LIF {pop}"))
            if nrn.const_input is not None:
                data = tile(nrn.const_input)[:, None]
                const = add(RingBuffer(data=data.astype(np.int32) if fixed else data.astype(np.float64)))
                const.s_out.connect(self.lif[pop].a_in)

        self.sources: dict[str, str] = {}
        src_proc: dict[str, Any] = {}
        for name, size in plan.inputs.items():
            p = path(name)
            memmap(p, replicas * size).flush()
            src_proc[name] = add(BulkSource(n=replicas * size, steps=steps, path=p, dtype=dtype, name=f"Input {name}"))
            self.sources[name] = p

        self.conns: dict[str, Any] = {}
        for proj, c in plan.connections.items():
            kwargs: dict[str, Any] = {"num_message_bits": 24 if c.graded else 0, "name": f"{proj}"}
            if fixed:
                kwargs.update(weight_exp=int(c.weight_exp), num_weight_bits=int(c.num_weight_bits),
                              sign_mode=SignMode[str(c.sign_mode).upper()])
            if replicas == 1 and c.dense:
                w = c.matrix()
                conn = (Dense(weights=w, **kwargs) if c.delay == 1
                        else DelayDense(weights=w, delays=np.full(w.shape, c.delay - 1, dtype=int), **kwargs))
            else:
                w = sp.kron(sp.identity(replicas, format="csr", dtype=c.weight.dtype), _csr(c), format="csr")
                if c.delay == 1:
                    conn = Sparse(weights=w, **kwargs)
                else:
                    d = w.copy()
                    d.data = np.full(d.data.shape, c.delay - 1, dtype=int)
                    conn = DelaySparse(weights=w, delays=d, **kwargs)
            add(conn)
            src = src_proc[c.source] if c.source in src_proc else self.lif[c.source]
            src.s_out.connect(conn.s_in)
            conn.a_out.connect(self.lif[c.target].a_in)
            self.conns[proj] = conn

        self.recorders: list[tuple[tuple[str, str], Any, str]] = []
        for pop, var in wanted:
            n = replicas * plan.neurons[pop].size
            p = path(f"{pop}.{var}")
            memmap(p, n).flush()
            if var == "spikes":
                rec = add(BulkRecorder(n=n, steps=steps, path=p, dtype=dtype, name=f"record {pop}.{var}"))
                self.lif[pop].s_out.connect(rec.a_in)
            else:
                target = self.lif[pop].v if var == "v" else self.lif[pop].u
                rec = add(BulkProbe(var=target, steps=steps, path=p, dtype=dtype, name=f"probe {pop}.{var}"))
            if self.recorders:
                self.recorders[-1][1].tie_out.connect(rec.tie_in)
            self.recorders.append(((pop, var), rec, p))

    def write_input(self, name: str, data: np.ndarray) -> None:
        p = self.sources[name]
        buf = np.memmap(p, dtype=np.int32 if self.plan.precision == "fixed" else np.float64, mode="r+",
                        shape=data.shape)
        buf[:] = data
        buf.flush()
        del buf

    def read(self) -> dict[tuple[str, str], np.ndarray]:
        dtype = np.int32 if self.plan.precision == "fixed" else np.float64
        out = {}
        for key, _, p in self.recorders:
            n = self.replicas * self.plan.neurons[key[0]].size
            out[key] = np.array(np.memmap(p, dtype=dtype, mode="r", shape=(self.steps, n)))
        return out

    def reset(self) -> None:
        """Back to the initial state (between samples of ``batch_mode="sequential"``): u, v and synaptic buffers."""
        for pop, nrn in self.plan.neurons.items():
            lif = self.lif[pop]
            lif.u.set(np.zeros(lif.u.shape))
            lif.v.set(np.tile(np.asarray(nrn.v_init, dtype=np.float64), self.replicas))
        for conn in self.conns.values():
            conn.a_buff.set(np.zeros(conn.a_buff.shape))


def _csr(c: ConnectionPlan) -> sp.csr_matrix:
    return sp.csr_matrix((c.weight, (c.post, c.pre)), shape=(c.n_post, c.n_pre))
