r"""Bit-exact Loihi 2 fixed point in the torch backend, batched, on CPU or GPU, trainable.

:class:`LoihiSimulationModule` reproduces Lava's bit-accurate ``fixed_pt``
models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PySparseModelBitAcc``,
their ``Delay*`` variants) bit for bit, for a whole batch at once: the same
integer weights, exponents, decays, biases and thresholds as the quantisation
pass :func:`ntgraph.passes.quantize.quantize` gives the Lava backend, and the
same arithmetic (``docs/lava.md``)::

    a_in = const + sum_p shift_p(W_p @ s_src[t - d_p])      shift: x << e, or floor(x / 2**-e)
    u    = trunc0(u * (4096 - (du + 1)) / 4096) + 64 * a_in,  wrapped into 24 bits
    v    = trunc0(v * (4096 - dv) / 4096) + u + bias,         clipped to +-(2**23 - 1)
    s    = v > vth * 64;  v <- 0 where s

Integers are held in float64 tensors: every intermediate value stays below
``2**53``, so the arithmetic is exact on CPUs and GPUs alike (CUDA has no
int64 matmul).  Timing is Lava's: every connection takes its effective delay
``meta['delay'] >= 1`` (compile with ``timing="pipelined"``).

Quantisation-aware training.  The module keeps the float weights and Dense
biases as parameters (with the torch backend's constraint map) and quantises
them in every forward pass exactly as the pass does; each rounding, floor,
truncation and wrap is a straight-through estimator (identity gradient) and
spikes use the backend's surrogate of ``(v - vth*64) / scale`` (model units).
So the forward pass *is* Lava's fixed-point network: a network trained in this
mode and written back with :meth:`LoihiSimulationModule.to_graph` gives the
same integers, hence the same outputs, on Lava ``fixed_pt``.  Neuron
parameters (time constants, thresholds, leaks) stay fixed in this mode.

Enabling it in the torch backend is a one-line hook (see the report):
``precision="loihi"`` -> :func:`lower_loihi`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ntgraph.errors import ShapeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Population, Projection, Sparse
from ntgraph.passes.quantize import (LOIHI2, LoihiNeuronQ, LoihiSynapseQ, QuantizationReport, loihi_form, quantize,
                                     weight_exponent, weight_sign_mode)

from .module import SimState, SimulationResult
from .projections import DenseProjection, OneToOneProjection, ProjectionModule, SparseProjection
from .surrogates import FastSigmoid, Surrogate

__all__ = ["LoihiSimulationModule", "lower_loihi", "ste"]

_PROJECTIONS = {Dense: DenseProjection, Sparse: SparseProjection, OneToOne: OneToOneProjection}
_V_MAX = float((1 << (LOIHI2.state_bits - 1)) - 1)
_WRAP = float(1 << (LOIHI2.state_bits - 1))
_UNITY = float(LOIHI2.decay_unity)
_ACT = float(1 << LOIHI2.act_shift)


def ste(x: Tensor, value: Tensor) -> Tensor:
    """``value`` in the forward pass, the gradient of ``x`` in the backward pass (straight-through)."""
    return x + (value - x).detach()


def _trunc_decay(x: Tensor, keep: float, grad: bool) -> Tensor:
    """``sign(x*keep) * (|x*keep| >> 12)``: the decay, truncated toward zero."""
    y = x * (keep / _UNITY)  # keep / 4096 and the product are exact: |x * keep| < 2**53
    return ste(y, torch.trunc(y)) if grad else torch.trunc(y)


def _wrap24(x: Tensor, grad: bool) -> Tensor:
    """Lava's 24-bit wrap of ``u`` (``x > 2**23`` -> ``x - 2**24``; ``<= -2**23`` -> ``x + 2**24``)."""
    # equal to Lava's two np.where: the conditions exclude each other (a single wrap, as Lava does)
    out = x + (2 * _WRAP) * ((x <= -_WRAP).to(x.dtype) - (x > _WRAP).to(x.dtype))
    return ste(x, out) if grad else out


def _shift(x: Tensor, exp: int, grad: bool) -> Tensor:
    """``x << exp`` for ``exp > 0``, else the arithmetic ``x >> -exp`` (floor)."""
    if exp > 0:
        return x * float(1 << exp)
    if exp == 0:
        return x
    y = x / float(1 << -exp)
    return ste(y, torch.floor(y)) if grad else torch.floor(y)


class _LoihiPopulation(nn.Module):
    """The fixed parameters of one population and the float pieces its bias is computed from."""

    def __init__(self, node_id: str, payload: Population, q: LoihiNeuronQ, form: Any) -> None:
        super().__init__()
        self.node_id, self.kind, self.size = node_id, q.kind, payload.size
        self.du, self.dv, self.vth = int(q.du), int(q.dv), int(q.vth)
        self.spiking = q.kind != "LI"
        f64 = lambda a: torch.tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        self.register_buffer("scale", f64(q.scale))
        self.register_buffer("offset", f64(q.offset))
        self.register_buffer("v_init", f64(q.v_init))
        self.register_buffer("gain", f64(form.gain))
        self.has_cs = q.current_scale is not None
        self.register_buffer("current_scale", f64(q.current_scale if self.has_cs else np.ones(self.size)))
        # The voltage bias without the projections' biases, exactly as loihi_form computed it.
        self.register_buffer("base_bias", f64(form.leak_bias))

    def integer_bias(self, b_proj: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """(voltage bias per step, constant ``a_in``) as integers with straight-through gradients."""
        if b_proj is None:
            b_proj = torch.zeros_like(self.base_bias)
        if self.kind == "CubaLIF":
            form_bias, const = self.base_bias, self.gain * b_proj
        else:
            form_bias, const = self.base_bias + self.gain * b_proj, None
        bias_v = self.scale * form_bias
        mag = bias_v.detach().abs()
        exp = torch.full_like(mag, float(LOIHI2.bias_exp_max))
        for e in range(LOIHI2.bias_exp_max, -1, -1):
            exp = torch.where(torch.round(mag / 2.0 ** e) <= LOIHI2.bias_mant_max, torch.full_like(exp, float(e)), exp)
        pow2 = torch.pow(2.0, exp)
        mant = bias_v / pow2
        mant = ste(mant, torch.clamp(torch.round(mant), LOIHI2.bias_mant_min, LOIHI2.bias_mant_max))
        bias = mant * pow2
        if const is None:
            return bias, torch.zeros_like(bias)
        c = self.scale * const / _ACT
        return bias, ste(c, torch.clamp(torch.round(c), -(1 << 15), (1 << 15) - 1))


class _LoihiProjection(nn.Module):
    """A projection's float weights (constraint map of the torch backend) and their quantisation."""

    def __init__(self, node_id: str, payload: Projection, constraints: Any, target: LoihiNeuronQ, gain: np.ndarray,
                 syn: LoihiSynapseQ, delay: int, from_input: bool) -> None:
        super().__init__()
        self.node_id = node_id
        self.weights: ProjectionModule = _PROJECTIONS[type(payload)](node_id, payload, constraints)
        self.n_post, self.n_pre = payload.n_post, payload.n_pre
        if isinstance(self.weights, SparseProjection):  # its weights are in CSR order, not the IR's synapse order
            post, pre = self.weights.post_index.numpy(), self.weights.pre_index.numpy()
        else:
            post, pre = payload.synapse_index()
        self.register_buffer("post", torch.tensor(np.asarray(post).ravel(), dtype=torch.long))
        self.register_buffer("pre", torch.tensor(np.asarray(pre).ravel(), dtype=torch.long))
        # (scale * gain) per target neuron, then * w / (64 * input_scale): the pass's order of operations
        self.register_buffer("row_scale", torch.tensor(np.asarray(target.scale) * np.asarray(gain), dtype=torch.float64))
        self.unit = _ACT * float(syn.input_scale)
        self.input_scale = float(syn.input_scale)
        self.delay = int(delay)
        self.from_input = from_input
        self.has_bias = isinstance(payload, Dense) and payload.bias is not None

    def bias(self) -> Optional[Tensor]:
        return self.weights.bias if self.has_bias else None  # type: ignore[return-value]

    def integer_weights(self) -> tuple[Tensor, int]:
        """``(W_int [n_post, n_pre], weight_exp)``; W_int has the straight-through gradient of the float weights."""
        w = self.weights.effective_weight().reshape(-1)
        dense = w.new_zeros(self.n_post, self.n_pre).index_put((self.post, self.pre), w, accumulate=True)
        m = (self.row_scale[:, None] * dense) / self.unit
        md = m.detach()
        pos, neg = float(md.clamp(min=0).max()), float((-md).clamp(min=0).max())
        if pos == 0 and neg == 0:
            return m * 0.0, 0
        mode = weight_sign_mode(pos, neg)
        exp = weight_exponent(pos, neg, mode)
        lo, hi, step = LOIHI2.weight_range(mode)
        scaled = m / 2.0 ** exp
        q = torch.clamp(torch.round(scaled.detach() / step) * step, lo, hi)
        return ste(scaled, q), exp


class LoihiSimulationModule(nn.Module):
    """A quantised network that computes exactly what Lava's ``fixed_pt`` models compute, for a whole batch.

    Call it like the torch backend's module: one tensor ``[T, batch, size]``
    per Input (positional or a dict by name); ``record`` lists probes
    (``"pop"``, ``"pop.v"``, ``"pop.i"``, ``"pop.spikes"``).  Returns a
    :class:`~backends.torchsim.module.SimulationResult` in model units
    (``v = v_int / scale + offset``), or Lava's integers with ``raw=True``.
    """

    def __init__(self, graph: Graph, options: Any, *, surrogate: Optional[Surrogate] = None,
                 detach_reset: bool = True, record: Sequence[str] = (), batch_first: bool = False) -> None:
        super().__init__()
        self.graph, self.options = graph, options
        self.surrogate = surrogate if surrogate is not None else FastSigmoid()
        self.detach_reset = bool(detach_reset)
        self.batch_first = bool(batch_first)
        self.input_ids = graph.inputs
        self.input_sizes = {i: graph[i].size for i in self.input_ids}
        self.output_sources = {o: graph.source(o) for o in graph.outputs}
        pops: dict[str, _LoihiPopulation] = {}
        forms = {}
        for pop in graph.populations:
            q = graph.meta(pop).get("loihi")
            if not isinstance(q, LoihiNeuronQ):
                raise ValidationError(f"Population '{pop}': no Loihi fixed-point annotation; run the quantize pass")
            forms[pop] = loihi_form(graph, pop, options.dt, options.discretization)
            pops[pop] = _LoihiPopulation(pop, graph[pop], q, forms[pop])
        projs: dict[str, _LoihiProjection] = {}
        self.input_scale: dict[str, float] = {}
        for proj in graph.projections:
            src, dst = graph.source(proj), graph.target(proj)
            delay = int(graph.meta(proj).get("delay", graph[proj].delay))
            if delay < 1:
                raise ValidationError(
                    f"Projection '{proj}'.delay: the effective delay is {delay}; Loihi 2 (and Lava) delay every "
                    f"connection by at least one step; compile with timing='pipelined'"
                )
            if delay > LOIHI2.max_delay_steps:
                raise ValidationError(f"Projection '{proj}'.delay: {delay} steps; Loihi 2 delays by at most "
                                      f"{LOIHI2.max_delay_steps}")
            syn = graph.meta(proj).get("loihi")
            if not isinstance(syn, LoihiSynapseQ):
                raise ValidationError(f"Projection '{proj}': no Loihi fixed-point annotation; run the quantize pass")
            from_input = isinstance(graph[src], Input)
            if not from_input and not pops[src].spiking:
                raise ValidationError(f"Projection '{proj}': reads the voltage of LI Population '{src}'; "
                                      f"Loihi projections carry spikes only")
            projs[proj] = _LoihiProjection(proj, graph[proj], graph.meta(proj)["constraints"], graph.meta(dst)["loihi"],
                                           forms[dst].gain, syn, delay, from_input)
            if from_input:
                self.input_scale[src] = syn.input_scale
        self.populations = nn.ModuleDict({_key(k): v for k, v in pops.items()})
        self.projections = nn.ModuleDict({_key(k): v for k, v in projs.items()})
        self._pop, self._proj = pops, projs
        self.incoming = {p: [k for k in graph.incoming(p)] for p in pops}
        self.history_len = {}
        for proj, m in projs.items():
            src = graph.source(proj)
            if not m.from_input:
                self.history_len[src] = max(self.history_len.get(src, 0), m.delay)
        self.default_record = self._parse_record(record)
        self.to(torch.float64)

    # ------------------------------------------------------------------ helpers
    def _parse_record(self, record: Optional[Sequence[str]]) -> list[tuple[str, str, str]]:
        if record is None:
            return []
        if isinstance(record, str):
            record = [record]
        out = []
        for spec in record:
            if spec in self._pop:
                pop, var = spec, ("spikes" if self._pop[spec].spiking else "v")
            elif "." in spec and spec.rsplit(".", 1)[0] in self._pop:
                pop, var = spec.rsplit(".", 1)
            else:
                raise ValidationError(f"record {spec!r}: expected a population id or 'population.variable'; "
                                      f"populations: {', '.join(self._pop)}")
            p = self._pop[pop]
            allowed = ("v",) if p.kind == "LI" else (("spikes", "i", "v") if p.kind == "CubaLIF" else ("spikes", "v"))
            if var not in allowed:
                raise ValidationError(f"record {spec!r}: Population '{pop}' ({p.kind}) has no variable {var!r}; "
                                      f"expected one of {', '.join(allowed)}")
            out.append((f"{pop}.{var}", pop, var))
        return list(dict.fromkeys(out))

    def _check_inputs(self, inputs: tuple) -> dict[str, Tensor]:
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            given = dict(inputs[0])
            if set(given) != set(self.input_ids):
                raise ValidationError(f"inputs: expected tensors for {self.input_ids}, got names {sorted(given)}")
        else:
            if len(inputs) != len(self.input_ids):
                raise ValidationError(f"inputs: expected {len(self.input_ids)} tensor(s), one per Input "
                                      f"{self.input_ids}, got {len(inputs)}")
            given = dict(zip(self.input_ids, inputs))
        ref = self.v_reference()
        out, tb = {}, None
        for name in self.input_ids:
            x = given[name]
            x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
            if self.batch_first and x.ndim == 3:
                x = x.transpose(0, 1)
            size = self.input_sizes[name]
            if x.ndim != 3 or x.shape[-1] != size:
                raise ShapeError(f"Input '{name}': expected a tensor of shape [T, batch, {size}], got {tuple(x.shape)}")
            x = x.to(device=ref.device, dtype=torch.float64)
            if tb is None:
                tb = tuple(x.shape[:2])
            elif tuple(x.shape[:2]) != tb:
                raise ShapeError(f"Input '{name}': has (T, batch) = {tuple(x.shape[:2])}, expected {tb}")
            out[name] = x
        return out

    def v_reference(self) -> Tensor:
        for b in self.buffers():
            return b
        return torch.zeros((), dtype=torch.float64)

    # ------------------------------------------------------------------ forward
    def forward(self, *inputs: Any, record: Optional[Sequence[str]] = None, raw: bool = False) -> SimulationResult:
        """Simulate ``T`` steps of the batch with Loihi 2's integer arithmetic."""
        xs = self._check_inputs(inputs)
        first = next(iter(xs.values()))
        steps, batch = int(first.shape[0]), int(first.shape[1])
        probes = self.default_record if record is None else self._parse_record(record)
        x_int = {k: torch.round(x * self.input_scale.get(k, 1.0)) for k, x in xs.items()}
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        weights = {p: m.integer_weights() for p, m in self._proj.items()}
        wt = {p: w.t().contiguous() for p, (w, _) in weights.items()}
        biases = {}
        for pop, p in self._pop.items():
            b_proj = None
            for proj in self.incoming[pop]:
                b = self._proj[proj].bias()
                if b is not None:
                    b_proj = (torch.zeros_like(p.base_bias) if b_proj is None else b_proj) + b
            biases[pop] = p.integer_bias(b_proj)
        # Drive from Inputs, all steps at once, delayed: drive[pop][t]
        drive: dict[str, Tensor] = {}
        for pop in self._pop:
            for proj in self.incoming[pop]:
                m = self._proj[proj]
                if not m.from_input:
                    continue
                w, e = weights[proj]
                acc = _shift(torch.matmul(x_int[self.graph.source(proj)], wt[proj]), e, grad)
                acc = torch.cat([acc.new_zeros(min(m.delay, steps), batch, m.n_post), acc])[:steps]
                drive[pop] = acc if pop not in drive else drive[pop] + acc
        u = {p: first.new_zeros(batch, m.size) for p, m in self._pop.items()}
        v = {p: m.v_init.expand(batch, m.size).clone() for p, m in self._pop.items()}
        history = {p: [first.new_zeros(batch, self._pop[p].size) for _ in range(n)] for p, n in self.history_len.items()}
        keep = {src for src in self.output_sources.values() if src in self._pop}
        traces: dict[str, list[Tensor]] = {p: [] for p in keep}
        probe_traces: dict[str, list[Tensor]] = {k: [] for k, _, _ in probes}
        plan = []
        for pop, p in self._pop.items():
            bias, const = biases[pop]
            rec = [(self.graph.source(proj), self._proj[proj].delay, wt[proj], weights[proj][1])
                   for proj in self.incoming[pop] if not self._proj[proj].from_input]
            drv = drive.get(pop)
            plan.append((pop, p, bias, _ACT * const.expand(batch, p.size), None if drv is None else _ACT * drv, rec,
                         _UNITY - (p.du + 1), _UNITY - p.dv, float(p.vth << LOIHI2.vth_shift)))
        for t in range(steps):
            now: dict[str, Tensor] = {}
            for pop, p, bias, const, drv, rec, keep_u, keep_v, theta in plan:
                act = const if drv is None else const + drv[t]  # 64 * a_in
                for src, delay, w_t, e in rec:
                    if t >= delay:
                        act = act + _ACT * _shift(torch.matmul(history[src][-delay], w_t), e, grad)
                u[pop] = _wrap24(_trunc_decay(u[pop], keep_u, grad) + act, grad)
                vn = torch.clamp(_trunc_decay(v[pop], keep_v, grad) + u[pop] + bias, -_V_MAX, _V_MAX)
                if grad:
                    z = self.surrogate((vn - theta) / p.scale)
                    zr = z.detach() if self.detach_reset else z
                    v[pop] = vn * (1.0 - zr)
                else:
                    spiked = vn > theta
                    z = spiked.to(vn.dtype)
                    v[pop] = vn.masked_fill(spiked, 0.0)
                now[pop] = z
            for pop in history:
                history[pop] = history[pop][1:] + [now[pop]]
            for pop in keep:
                traces[pop].append(now[pop] if self._pop[pop].spiking else self._decode(pop, "v", v[pop], raw))
            for key, pop, var in probes:
                value = now[pop] if var == "spikes" else (v[pop] if var == "v" else u[pop])
                probe_traces[key].append(value if var == "spikes" else self._decode(pop, var, value, raw))
        outputs = {}
        for out_id, src in self.output_sources.items():
            outputs[out_id] = xs[src] if src in xs else torch.stack(traces[src])
        records = {k: torch.stack(v_) for k, v_ in probe_traces.items()}
        if self.batch_first:
            outputs = {k: x.transpose(0, 1) for k, x in outputs.items()}
            records = {k: x.transpose(0, 1) for k, x in records.items()}
        return SimulationResult(outputs, records, SimState())

    def _decode(self, pop: str, var: str, value: Tensor, raw: bool) -> Tensor:
        if raw:
            return value
        p = self._pop[pop]
        if var == "v":
            return value / p.scale + p.offset
        return value / (p.scale * p.current_scale)

    # ------------------------------------------------------------------ write-back
    def integer_weights(self) -> dict[str, tuple[np.ndarray, int]]:
        """The current integer weights ``(W_int [n_post, n_pre], weight_exp)`` of every projection."""
        out = {}
        with torch.no_grad():
            for p, m in self._proj.items():
                w, e = m.integer_weights()
                out[p] = (w.cpu().numpy().astype(np.int64), e)
        return out

    def to_graph(self) -> Graph:
        """A new IR graph with the current float weights and biases (re-quantising it gives this module's integers)."""
        graph = self.graph.copy()
        graph.attrs = {}
        for node in list(graph):
            graph.meta(node).clear()
        for proj, m in self._proj.items():
            payload = m.weights.to_payload()
            if m.has_bias:
                payload = payload.replace(bias=m.weights.bias.detach().cpu().double().numpy())
            graph = graph.with_payload(proj, payload)
        return graph


def _key(node_id: str) -> str:
    return node_id.replace(".", "\u00b7")


def lower_loihi(graph: Graph, options: Any, **extra: Any) -> LoihiSimulationModule:
    """The torch backend's ``precision="loihi"``: quantise (unless the pipeline did) and build the module.

    ``extra``: ``quantize`` (dict of options for :func:`~ntgraph.passes.quantize.quantize`),
    ``surrogate``, ``detach_reset``, ``record``, ``batch_first``, ``device``.
    """
    qopts = extra.pop("quantize", None) or {}
    device = extra.pop("device", None)
    if qopts or not isinstance(graph.attrs.get("quantization"), QuantizationReport):
        graph = quantize(graph, dt=options.dt, discretization=options.discretization, **qopts)
    module = LoihiSimulationModule(graph, options, **{k: v for k, v in extra.items() if v is not None})
    return module.to(device=device) if device is not None else module
