r"""Loihi 2 numerics: the LIF form of ntgraph's neurons and the fixed-point quantisation pass.

Loihi 2's (and Lava's) LIF neuron
---------------------------------
Lava's ``LIF`` process runs, per step, with one ``du``, ``dv`` and ``vth`` per
population and a per-neuron ``bias``::

    u <- u*(1 - du) + a_in            (a_in: summed synaptic input of this step)
    v <- v*(1 - dv) + u + bias
    s  = v > vth;  v <- 0 where s

:func:`loihi_form` rewrites an ntgraph population into this form *exactly*
(in floating point) with a per-neuron voltage offset ``c = v_reset`` (so that
Lava's reset to 0 is ntgraph's reset to ``v_reset``) and a per-neuron gain that
multiplies every incoming weight.  With ``a``, ``b`` the decays of ``tau_mem``
and ``tau_syn`` (``1 - dt/tau`` for euler, ``exp(-dt/tau)`` for exact):

=========  ====  ======  ==========================  ===============================  ===================
model      du    dv      gain (weights x gain)       bias per step                    Lava state
=========  ====  ======  ==========================  ===============================  ===================
LIF        1     1-a     (1-a) r                     (1-a)(v_leak - c) + gain*b       u = gain*I, v-c
CubaLIF    1-b   1-a     (1-a) r (1-b) w_in          (1-a)(v_leak - c)                u = (1-a) r i, v-c
IF         1     0       dt r                        gain*b                           u = gain*I, v-c
LI         1     1-a     (1-a) r                     (1-a) v_leak + gain*b            u = gain*I, v
=========  ====  ======  ==========================  ===============================  ===================

``b`` is the sum of the biases of the Dense projections into the population (a
constant current).  For CubaLIF it cannot be a voltage bias: it enters the
current, ``const_input = gain*b`` per step into ``a_in``.  Threshold:
``v_th - c`` (LI: none, ``+inf``).  du, dv and the threshold are one value per
population in Lava, so a population whose ``tau_mem`` or ``tau_syn`` differ
between neurons is rejected; heterogeneous thresholds are representable by a
per-neuron voltage scale ``k = vth / (v_th - c)`` (:meth:`LoihiNeuronForm.float_scale`).
``reset="subtract"`` has no Lava equivalent and is rejected.

Loihi 2 fixed point (Lava's ``fixed_pt`` models, bit-accurate with the chip)
----------------------------------------------------------------------------
Integers throughout; ``>>`` below truncates toward zero for the decays
(sign-magnitude) and floors for the weight exponent (arithmetic shift)::

    Dense:  a_out[t+1] = (sum_j w_ij s_j[t]) << weight_exp   (>> -weight_exp if negative)
    LIF:    u <- sign(u*(4096-(du+1))) * (|u*(4096-(du+1))| >> 12) + (a_in << 6),  wrapped to 24 bits
            v <- sign(v*(4096-dv)) * (|v*(4096-dv)| >> 12) + u + (bias_mant << bias_exp)
            v <- clip(v, -2**23+1, 2**23-1);  s = v > (vth << 6);  v <- 0 where s

Bit widths (``LOIHI2``): weights 8 bits with the sign (mixed-sign weights are
even numbers in [-256, 254], single-sign ones in [0, 255] or [-255, 0]), a
shared weight exponent per projection in [-8, 7], 12-bit decays, 13-bit signed
bias mantissa with a 3-bit exponent, 17-bit unsigned threshold, 24-bit ``u`` and
``v``, synaptic delays 0..63 (DelayDense: a delay ``d`` arrives after ``d+1`` steps).

The pass
--------
:func:`quantize` (``Pass`` :data:`QUANTIZE_LOIHI`) maps trained float weights,
decays, thresholds and biases onto these widths.  Each population gets a
voltage scale ``S`` (integer units per model unit): threshold populations put
``v_th - v_reset`` at ``vth*64`` with ``vth = 2**23 / 64 / v_headroom`` (so the
24-bit voltage spans ``+-v_headroom`` thresholds), LI readouts scale their
largest reachable voltage to at most ``2**22`` (by a power of two).  Each projection gets the smallest weight
exponent that fits its largest weight into the 8-bit mantissa, and the report
counts clipped and zeroed weights and estimates the error (LI scales are
powers of two, so retraining the weights rarely changes them).  Results are
annotated, never applied to the payloads: ``meta['loihi']`` of every population
(:class:`LoihiNeuronQ`) and projection (:class:`LoihiSynapseQ`) and
``attrs['quantization']`` (:class:`QuantizationReport`, printable).  The pass
needs ``dt`` and ``discretization``, which :meth:`Pipeline.run` passes to every
pass; add it to a pipeline with ``Pipeline([*default_pipeline(), QUANTIZE_LOIHI])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

import numpy as np

from ..errors import UnsupportedNodeError, ValidationError
from ..graph import Graph
from ..ir import Dense, Input, Population, Projection
from ..models import IF, LI, LIF, CubaLIF
from .core import Pass

__all__ = [
    "LOIHI2",
    "Loihi2Format",
    "LoihiNeuronForm",
    "LoihiNeuronQ",
    "LoihiSynapseQ",
    "QuantizationReport",
    "loihi_form",
    "synapse_coordinates",
    "quantize",
    "quantize_weights",
    "weight_sign_mode",
    "weight_exponent",
    "split_bias",
    "QUANTIZE_LOIHI",
]


@dataclass(frozen=True)
class Loihi2Format:
    """Bit widths of Loihi 2's LIF neuron and synapses, as implemented by Lava's ``fixed_pt`` models.

    Source: ``lava/proc/lif/models.py`` (``PyLifModelBitAcc``: du, dv 12-bit
    unsigned; bias mantissa 13-bit signed, exponent 3-bit; vth 17-bit unsigned;
    u, v 24-bit; activation and threshold shifted by 6), ``lava/proc/dense/models.py``
    and ``lava/utils/weightutils.py`` (8-bit weights with the sign, mixed-sign
    weights truncated to even values), ``PyDelayDenseModelBitAcc`` (delays
    0..63).  The weight exponent range [-8, 7] is Loihi's signed 4-bit
    exponent; Lava itself checks none of these widths.
    """

    decay_bits: int = 12
    state_bits: int = 24
    vth_bits: int = 17
    bias_mant_bits: int = 13
    bias_exp_max: int = 7
    weight_bits: int = 8
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    act_shift: int = 6
    vth_shift: int = 6
    max_delay_steps: int = 64
    message_bits: int = 24

    @property
    def decay_unity(self) -> int:
        return 1 << self.decay_bits

    @property
    def v_max(self) -> int:
        """Largest voltage: ``2**23 - 1`` (v saturates at +-v_max)."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def vth_max(self) -> int:
        return (1 << self.vth_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def bias_mant_min(self) -> int:
        return -(1 << (self.bias_mant_bits - 1))

    def weight_range(self, sign_mode: str) -> tuple[int, int, int]:
        """(lowest, highest, step) of the integer weights of a projection of ``sign_mode``."""
        full = (1 << self.weight_bits) - 1
        if sign_mode == "mixed":
            return -(1 << self.weight_bits), full - 1, 2
        if sign_mode == "inhibitory":
            return -full, 0, 1
        return 0, full, 1


LOIHI2 = Loihi2Format()

SPIKING_KINDS = ("LIF", "CubaLIF", "IF")


# ----------------------------------------------------------------------------- the LIF form
@dataclass(frozen=True)
class LoihiNeuronForm:
    """A population rewritten as Lava's LIF, in floating point (see the module docstring).

    All arrays have one entry per neuron.  Voltages are ``v - offset`` in the
    model's units; ``threshold`` is ``v_th - offset`` (``+inf`` for LI).
    ``current_scale`` converts Lava's ``u`` back to CubaLIF's ``i`` (``u =
    current_scale * i``); None for the other models.  ``leak_bias`` is the part
    of the bias that does not come from projection biases (``bias = leak_bias
    + gain*b``, except CubaLIF whose ``gain*b`` is ``const_input``).
    """

    node_id: str
    kind: str
    du: float
    dv: float
    offset: np.ndarray
    threshold: np.ndarray
    bias: np.ndarray
    v_init: np.ndarray
    gain: np.ndarray
    const_input: np.ndarray
    current_scale: Optional[np.ndarray]
    leak_bias: np.ndarray

    @property
    def size(self) -> int:
        return int(self.offset.size)

    @property
    def spiking(self) -> bool:
        return self.kind in SPIKING_KINDS

    def float_scale(self) -> tuple[np.ndarray, float]:
        """Per-neuron voltage scale ``k`` and the population threshold ``vth`` for Lava's float LIF.

        ``k = 1`` and ``vth = v_th - v_reset`` when every neuron has the same
        threshold (the common case; then Lava computes exactly ntgraph's
        numbers), else ``k = vth / (v_th - v_reset)`` with ``vth`` the largest
        threshold, which needs every ``v_th > v_reset``.
        """
        if self.kind == "LI":
            return np.ones(self.size), math.inf
        thr = self.threshold
        if np.all(thr == thr[0]):
            return np.ones(self.size), float(thr[0])
        if np.any(thr <= 0):
            k = int(np.argmax(thr <= 0))
            raise ValidationError(
                f"Population '{self.node_id}'.v_th: Lava's LIF has one threshold per population; heterogeneous "
                f"thresholds are mapped by rescaling each neuron's voltage, which needs v_th > v_reset, but neuron "
                f"{k} has v_th - v_reset = {thr[k]:g}; expected > 0"
            )
        vth = float(np.max(thr))
        return vth / thr, vth


def _decay(tau: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    tau = np.asarray(tau, dtype=np.float64)
    return 1.0 - dt / tau if discretization == "euler" else np.exp(-dt / tau)


def _one_value(node_id: str, attr: str, what: str, values: np.ndarray, taus: np.ndarray) -> float:
    """The single value Lava allows per population, or a ValidationError naming the attribute."""
    if not np.all(values == values[0]):
        raise ValidationError(
            f"Population '{node_id}'.{attr}: Lava's LIF has a single {what} per population, but {attr} takes "
            f"values in [{np.min(taus):g}, {np.max(taus):g}] s across its {values.size} neurons; expected one value "
            f"(split the population into groups of equal {attr})"
        )
    return float(values[0])


def _projection_bias(graph: Graph, pop_id: str) -> np.ndarray:
    total = np.zeros(graph[pop_id].size)
    for proj in graph.incoming(pop_id):
        payload = graph[proj]
        if isinstance(payload, Dense) and payload.bias is not None:
            total = total + np.asarray(payload.bias, dtype=np.float64)
    return total


def loihi_form(graph: Graph, pop_id: str, dt: float, discretization: str = "euler") -> LoihiNeuronForm:
    """Rewrite population ``pop_id`` as Lava's LIF (see the module docstring for the table).

    Raises :class:`UnsupportedNodeError` for models Lava's LIF cannot express
    (ALIF, Wilson-Cowan, rate units) and :class:`ValidationError` naming the
    attribute for subtractive reset and per-neuron time constants.
    """
    payload = graph[pop_id]
    if not isinstance(payload, Population):
        raise ValidationError(f"{payload.kind} '{pop_id}': expected a Population")
    model = payload.model
    n = payload.size
    kind = type(model).__name__
    if not isinstance(model, (LIF, CubaLIF, IF, LI)):
        raise UnsupportedNodeError(
            f"backend 'lava': Population '{pop_id}' has model {kind}, which Lava's LIF cannot express; "
            f"supported: LIF, CubaLIF, IF, LI"
        )
    if getattr(model, "reset", "zero") != "zero":
        raise ValidationError(
            f"Population '{pop_id}'.reset: Lava's LIF resets v to 0 (reset='zero'); it has no subtractive reset, "
            f"got reset={model.reset!r}; expected reset='zero'"
        )
    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    b_proj = _projection_bias(graph, pop_id)
    zeros = np.zeros(n)
    if isinstance(model, IF):
        c = f64(model.v_reset)
        gain = dt * f64(model.r)
        return LoihiNeuronForm(pop_id, kind, 1.0, 0.0, c, f64(model.v_th) - c, zeros + gain * b_proj, zeros, gain, zeros,
                               None, zeros)
    a_all = _decay(model.tau_mem, dt, discretization)
    a = _one_value(pop_id, "tau_mem", "voltage decay dv", a_all, f64(model.tau_mem))
    if isinstance(model, LI):
        gain = (1.0 - a) * f64(model.r)
        leak = (1.0 - a) * f64(model.v_leak)
        return LoihiNeuronForm(pop_id, kind, 1.0, 1.0 - a, zeros, np.full(n, np.inf), leak + gain * b_proj,
                               f64(model.v_leak), gain, zeros, None, leak)
    c = f64(model.v_reset)
    thr = f64(model.v_th) - c
    v_init = f64(model.v_leak) - c
    leak = (1.0 - a) * (f64(model.v_leak) - c)
    if isinstance(model, LIF):
        gain = (1.0 - a) * f64(model.r)
        return LoihiNeuronForm(pop_id, kind, 1.0, 1.0 - a, c, thr, leak + gain * b_proj, v_init, gain, zeros, None, leak)
    b_all = _decay(model.tau_syn, dt, discretization)
    b = _one_value(pop_id, "tau_syn", "current decay du", b_all, f64(model.tau_syn))
    current_scale = (1.0 - a) * f64(model.r)
    gain = current_scale * (1.0 - b) * f64(model.w_in)
    return LoihiNeuronForm(pop_id, kind, 1.0 - b, 1.0 - a, c, thr, leak, v_init, gain, gain * b_proj, current_scale,
                           leak)


def synapse_coordinates(payload: Projection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(post, pre, weight) of every distinct synapse; duplicate Sparse pairs are summed, zeros dropped."""
    if isinstance(payload, Dense):
        w = np.asarray(payload.weight, dtype=np.float64)
        post, pre = np.nonzero(w)
        return post, pre, w[post, pre]
    post, pre = payload.synapse_index()
    post, pre = np.asarray(post).ravel(), np.asarray(pre).ravel()
    w = np.asarray(payload.weight, dtype=np.float64).ravel()
    key = post.astype(np.int64) * payload.n_pre + pre
    uniq, inv = np.unique(key, return_inverse=True)
    summed = np.zeros(uniq.size)
    np.add.at(summed, inv, w)
    keep = summed != 0
    uniq, summed = uniq[keep], summed[keep]
    return uniq // payload.n_pre, uniq % payload.n_pre, summed


# ----------------------------------------------------------------------------- fixed point
def quantize_weights(m: np.ndarray, fmt: Loihi2Format = LOIHI2) -> tuple[np.ndarray, int, str, int]:
    """Integer weights for target values ``m`` (in units of one ``a_in`` step before the exponent).

    Returns ``(w, weight_exp, sign_mode, clipped)``: the sign mode follows the
    signs of ``m`` (as Lava's ``determine_sign_mode``), the exponent is the
    smallest in range whose mantissa holds the largest ``|m|``, and ``w`` is
    ``m / 2**weight_exp`` rounded to the sign mode's grid (even numbers for
    mixed signs) and clipped; ``clipped`` counts the weights the clip changed.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.size == 0 or not np.any(m):
        return np.zeros(m.shape, dtype=np.int32), 0, "excitatory", 0
    pos, neg = float(np.max(m, initial=0.0)), float(-np.min(m, initial=0.0))
    sign_mode = weight_sign_mode(pos, neg)
    lo, hi, step = fmt.weight_range(sign_mode)
    exp = weight_exponent(pos, neg, sign_mode, fmt)
    scaled = m / 2.0 ** exp
    w = np.round(scaled / step) * step
    clipped = int(np.count_nonzero((w < lo) | (w > hi)))
    w = np.clip(w, lo, hi)
    return w.astype(np.int32), exp, sign_mode, clipped


def weight_sign_mode(pos: float, neg: float) -> str:
    """Lava's sign mode for weights whose largest positive value is ``pos`` and largest negative magnitude ``neg``."""
    if pos > 0 and neg > 0:
        return "mixed"
    return "inhibitory" if neg > 0 else "excitatory"


def weight_exponent(pos: float, neg: float, sign_mode: str, fmt: Loihi2Format = LOIHI2) -> int:
    """The smallest weight exponent in range whose mantissa grid holds ``pos`` and ``-neg``."""
    lo, hi, _ = fmt.weight_range(sign_mode)
    need = max(pos / hi if hi > 0 else 0.0, neg / -lo if lo < 0 else 0.0)
    if need <= 0:
        return 0
    exp = int(math.ceil(math.log2(need)))
    # guard against log2 rounding at exact powers of two
    while exp > fmt.weight_exp_min and need <= 2.0 ** (exp - 1):
        exp -= 1
    while need > 2.0 ** exp and exp < fmt.weight_exp_max:
        exp += 1
    return int(min(max(exp, fmt.weight_exp_min), fmt.weight_exp_max))


def split_bias(bias: np.ndarray, fmt: Loihi2Format = LOIHI2) -> tuple[np.ndarray, np.ndarray, int]:
    """``bias ~ mant << exp`` per neuron: the smallest exponent in [0, 7] whose 13-bit mantissa holds it.

    Returns ``(mant, exp, clipped)``.
    """
    bias = np.asarray(bias, dtype=np.float64)
    mag = np.abs(bias)
    exp = np.full(bias.shape, fmt.bias_exp_max, dtype=np.int32)
    for e in range(fmt.bias_exp_max, -1, -1):
        exp = np.where(np.round(mag / 2.0 ** e) <= fmt.bias_mant_max, e, exp)
    mant = np.round(bias / 2.0 ** exp)
    clipped = int(np.count_nonzero((mant > fmt.bias_mant_max) | (mant < fmt.bias_mant_min)))
    mant = np.clip(mant, fmt.bias_mant_min, fmt.bias_mant_max).astype(np.int32)
    return mant, exp.astype(np.int32), clipped


@dataclass(frozen=True)
class LoihiNeuronQ:
    """Fixed-point parameters of one population (Lava ``LIF`` with ``fixed_pt``).

    ``scale`` (per neuron) converts model voltages to integers:
    ``v_int = scale * (v - offset)``; read back ``v = v_int / scale + offset``
    and, for CubaLIF, ``i = u_int / (scale * current_scale)``.
    """

    node_id: str
    kind: str
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    v_init: np.ndarray
    const_input: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    current_scale: Optional[np.ndarray]
    du_error: float
    dv_error: float
    bias_clipped: int
    bias_error: float
    reference: float

    def describe(self) -> str:
        bias = "" if not np.any(self.bias_mant) else f" bias_err={self.bias_error:.2g}"
        return (f"{self.kind} du={self.du} dv={self.dv} (decay err {self.dv_error:.1e}) vth={self.vth}"
                f"{bias}{' BIAS CLIPPED x' + str(self.bias_clipped) if self.bias_clipped else ''}")


@dataclass(frozen=True)
class LoihiSynapseQ:
    """Fixed-point weights of one projection (Lava ``Dense``/``Sparse`` with ``fixed_pt``).

    ``weight`` holds the integer weights: an ``(n_post, n_pre)`` matrix for
    Dense projections, one entry per (coalesced) synapse at ``post_index``,
    ``pre_index`` for Sparse and OneToOne ones.  ``input_scale`` is the integer
    value of one unit of a graded Input (1 for spike sources).
    """

    node_id: str
    weight: np.ndarray
    post_index: Optional[np.ndarray]
    pre_index: Optional[np.ndarray]
    weight_exp: int
    sign_mode: str
    num_weight_bits: int
    input_scale: float
    n_weights: int
    clipped: int
    zeroed: int
    rel_rmse: float
    max_error: float
    current_error: float
    max_a_in: int

    def describe(self) -> str:
        text = (f"exp={self.weight_exp:+d} {self.sign_mode} rmse={self.rel_rmse:.2%} max_err={self.max_error:.2g}thr "
                f"I_err~{self.current_error:.2g}thr")
        if self.clipped:
            text += f" CLIPPED={self.clipped}"
        if self.zeroed:
            text += f" zeroed={self.zeroed}"
        if self.max_a_in > (1 << 15) - 1:
            text += f" a_in up to {self.max_a_in} exceeds 16 bits"
        return text


@dataclass
class QuantizationReport:
    """What the quantisation did, node by node; ``str()`` prints a table."""

    neurons: dict = field(default_factory=dict)
    synapses: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @property
    def clipped(self) -> int:
        return sum(q.clipped for q in self.synapses.values())

    @property
    def zeroed(self) -> int:
        return sum(q.zeroed for q in self.synapses.values())

    @property
    def n_weights(self) -> int:
        return sum(q.n_weights for q in self.synapses.values())

    def to_dict(self) -> dict:
        return {
            "options": dict(self.options),
            "populations": {
                k: {"kind": q.kind, "du": q.du, "dv": q.dv, "vth": q.vth, "du_error": q.du_error, "dv_error": q.dv_error,
                    "bias_clipped": q.bias_clipped, "bias_error": q.bias_error}
                for k, q in self.neurons.items()
            },
            "projections": {
                k: {"weight_exp": q.weight_exp, "sign_mode": q.sign_mode, "n_weights": q.n_weights, "clipped": q.clipped,
                    "zeroed": q.zeroed, "rel_rmse": q.rel_rmse, "max_error": q.max_error,
                    "current_error": q.current_error, "max_a_in": q.max_a_in}
                for k, q in self.synapses.items()
            },
            "totals": {"weights": self.n_weights, "clipped": self.clipped, "zeroed": self.zeroed},
        }

    def __str__(self) -> str:
        rows = [(k, q.describe()) for k, q in self.neurons.items()] + [(k, q.describe()) for k, q in self.synapses.items()]
        width = max([len(k) for k, _ in rows] + [4])
        lines = [f"Loihi 2 fixed-point quantisation ({', '.join(f'{k}={v}' for k, v in self.options.items())})"]
        lines += [f"  {k:<{width}}  {text}" for k, text in rows]
        lines.append(f"  total: {self.n_weights} weights, {self.clipped} clipped, {self.zeroed} rounded to zero")
        return "\n".join(lines)


def _per_input(value: Union[float, Mapping[str, float]], name: str, node_id: str) -> float:
    v = value.get(node_id, 1.0) if isinstance(value, Mapping) else value
    v = float(v)
    if not math.isfinite(v) or v <= 0:
        raise ValidationError(f"quantize option {name} for Input '{node_id}': expected a positive number, got {v!r}")
    return v


def _source_kind(graph: Graph, proj: str) -> str:
    src = graph.source(proj)
    payload = graph[src]
    if isinstance(payload, Input):
        return "input"
    if isinstance(payload, Population) and payload.model.spiking:
        return "spikes"
    raise UnsupportedNodeError(
        f"backend 'lava': Projection '{proj}' reads the {payload.model.output_var!r} of Population '{src}' "
        f"({type(payload.model).__name__}); on Lava/Loihi projections carry spikes only; expected a spiking "
        f"source (LIF, CubaLIF, IF) or an Input"
    )


def _reference_bounds(graph: Graph, pop: str, form: LoihiNeuronForm, input_range: Mapping[str, float]) -> np.ndarray:
    """Largest |v - offset| an LI population can reach: max(|v0|, (|bias| + |gain| max|I|) / dv)."""
    drive = np.zeros(form.size)
    for proj in graph.incoming(pop):
        payload = graph[proj]
        src = graph.source(proj)
        xmax = input_range[src] if isinstance(graph[src], Input) else 1.0
        post, _, w = synapse_coordinates(payload)
        np.add.at(drive, post, np.abs(w) * xmax)
    steady = (np.abs(form.bias) + np.abs(form.gain) * drive) / max(form.dv, 1e-12)
    return np.maximum(np.abs(form.v_init), steady)


def _quantize_population(form: LoihiNeuronForm, bound: Optional[np.ndarray], v_headroom: float,
                         fmt: Loihi2Format) -> LoihiNeuronQ:
    unity = fmt.decay_unity
    du = int(np.clip(round(form.du * unity) - 1, 0, unity - 1))
    dv = int(np.clip(round(form.dv * unity), 0, unity - 1))
    du_err = abs((du + 1) / unity - form.du)
    dv_err = abs(dv / unity - form.dv)
    if form.kind == "LI":
        peak = float(np.max(bound)) if bound is not None and np.max(bound) > 0 else 1.0
        # a power of two, so that small changes of the weights (training) rarely change the scale
        scale = np.full(form.size, 2.0 ** math.floor(math.log2((1 << (fmt.state_bits - 2)) / peak)))
        vth = fmt.vth_max
        reference = float(scale[0] * peak)
    else:
        if np.any(form.threshold <= 0):
            k = int(np.argmax(form.threshold <= 0))
            raise ValidationError(
                f"Population '{form.node_id}'.v_th: Loihi's threshold is an unsigned integer above the reset "
                f"potential, but neuron {k} has v_th - v_reset = {form.threshold[k]:g}; expected > 0 for fixed point"
            )
        vth = int(np.clip(math.floor((1 << (fmt.state_bits - 1)) / (1 << fmt.vth_shift) / v_headroom), 1, fmt.vth_max))
        scale = (vth << fmt.vth_shift) / form.threshold
        reference = float(vth << fmt.vth_shift)
    bias_v = scale * form.bias
    mant, exp, bias_clipped = split_bias(bias_v, fmt)
    got = mant.astype(np.float64) * 2.0 ** exp
    bias_error = float(np.max(np.abs(got - bias_v)) / reference) if form.size else 0.0
    v_init = np.clip(np.round(scale * form.v_init), -fmt.v_max, fmt.v_max).astype(np.int32)
    const = np.clip(np.round(scale * form.const_input / (1 << fmt.act_shift)), -(1 << 15), (1 << 15) - 1).astype(np.int32)
    return LoihiNeuronQ(form.node_id, form.kind, du, dv, vth, mant, exp, v_init, const, scale, form.offset,
                        form.current_scale, du_err, dv_err, bias_clipped, bias_error, reference)


def _quantize_projection(graph: Graph, proj: str, target: LoihiNeuronQ, form: LoihiNeuronForm, input_scale: float,
                         rate: float, fmt: Loihi2Format) -> LoihiSynapseQ:
    payload = graph[proj]
    post, pre, w = synapse_coordinates(payload)
    unit = float(1 << fmt.act_shift)
    m = target.scale[post] * form.gain[post] * w / (unit * input_scale)
    q, exp, sign_mode, clipped = quantize_weights(m, fmt)
    got = q.astype(np.float64) * 2.0 ** exp
    err = got - m
    nz = m != 0
    zeroed = int(np.count_nonzero(nz & (q == 0)))
    rel_rmse = float(np.sqrt(np.sum(err ** 2) / np.sum(m ** 2))) if np.any(nz) else 0.0
    ref_units = target.reference / unit  # one threshold in a_in units
    max_error = float(np.max(np.abs(err)) / ref_units) if err.size else 0.0
    row_var = np.zeros(payload.n_post)
    np.add.at(row_var, post, err ** 2)
    floor_bias = 0.5 if exp < 0 else 0.0
    current_error = float(np.sqrt(rate * np.mean(row_var) + floor_bias ** 2) / ref_units) if payload.n_post else 0.0
    row_abs = np.zeros(payload.n_post)
    np.add.at(row_abs, post, np.abs(got) * (input_scale if isinstance(graph[graph.source(proj)], Input) else 1.0))
    max_a_in = int(np.max(row_abs, initial=0.0))
    if isinstance(payload, Dense):
        dense = np.zeros((payload.n_post, payload.n_pre), dtype=np.int32)
        dense[post, pre] = q
        return LoihiSynapseQ(proj, dense, None, None, exp, sign_mode, fmt.weight_bits, input_scale, int(m.size),
                             clipped, zeroed, rel_rmse, max_error, current_error, max_a_in)
    return LoihiSynapseQ(proj, q, post.astype(np.int64), pre.astype(np.int64), exp, sign_mode, fmt.weight_bits,
                         input_scale, int(m.size), clipped, zeroed, rel_rmse, max_error, current_error, max_a_in)


def quantize(graph: Graph, *, dt: float, discretization: str = "euler", v_headroom: float = 64.0,
             input_scale: Union[float, Mapping[str, float]] = 1.0, input_range: Union[float, Mapping[str, float]] = 1.0,
             rate: float = 0.1, fmt: Loihi2Format = LOIHI2, **_: object) -> Graph:
    """Annotate the Loihi 2 fixed-point parameters of every population and projection.

    ``v_headroom``: voltages down to ``-v_headroom`` thresholds (and up to the
    same above) fit the 24-bit state; larger values leave more room and less
    resolution.  ``input_scale``: integer value of one unit of each Input (a
    float or a dict by Input id; 1 for 0/1 spike inputs).  ``input_range``:
    largest |value| of each Input (sizes the LI readouts).  ``rate``: the
    presynaptic activity assumed by the current-error estimate.  Returns an
    annotated copy (``meta['loihi']``, ``attrs['quantization']``); raises the
    errors of :func:`loihi_form` for what Loihi cannot express.
    """
    if not (isinstance(v_headroom, (int, float)) and math.isfinite(v_headroom) and v_headroom >= 1):
        raise ValidationError(f"quantize option v_headroom: expected a number >= 1 (thresholds of voltage range), got {v_headroom!r}")
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
        raise ValidationError(f"quantize option rate: expected a probability in [0, 1], got {rate!r}")
    out = graph.copy()
    scales = {i: _per_input(input_scale, "input_scale", i) for i in out.inputs}
    ranges = {i: _per_input(input_range, "input_range", i) for i in out.inputs}
    for proj in out.projections:
        _source_kind(out, proj)
    forms = {p: loihi_form(out, p, dt, discretization) for p in out.populations}
    report = QuantizationReport(options={"v_headroom": v_headroom, "dt": dt, "discretization": discretization})
    neurons: dict[str, LoihiNeuronQ] = {}
    for pop, form in forms.items():
        bound = _reference_bounds(out, pop, form, ranges) if form.kind == "LI" else None
        neurons[pop] = _quantize_population(form, bound, float(v_headroom), fmt)
        out.meta(pop)["loihi"] = neurons[pop]
        report.neurons[pop] = neurons[pop]
    for proj in out.projections:
        src, dst = out.source(proj), out.target(proj)
        xs = scales[src] if src in scales else 1.0
        q = _quantize_projection(out, proj, neurons[dst], forms[dst], xs, float(rate), fmt)
        out.meta(proj)["loihi"] = q
        report.synapses[proj] = q
    out.attrs["quantization"] = report
    return out


#: The pass, for pipelines: ``Pipeline([*default_pipeline(), QUANTIZE_LOIHI])``.
QUANTIZE_LOIHI = Pass("quantize_loihi", quantize,
                      "Loihi 2 fixed point: weights, exponents, decays, thresholds, biases; clipped/zeroed report")
