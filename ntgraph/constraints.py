"""Biological and hardware constraints, attached to IR nodes as data.

Constraints are plain frozen dataclasses.  Where a constraint lives:

* :class:`DalesLaw` on an :class:`~ntgraph.ir.Input` or :class:`~ntgraph.ir.Population`:
  each neuron is excitatory (+1) or inhibitory (-1), and every weight of every
  projection *leaving* that node has the neuron's sign.
* :class:`SignMask`, :class:`ConnectivityMask`, :class:`NoSelfConnections`,
  :class:`WeightBounds` and :class:`BalancedInit` on a projection.

:func:`resolve` turns the constraints that bear on one projection into a
:class:`ResolvedConstraints`: one sign, one mask and one pair of bounds per
stored weight.  Backends enforce those (the torch backend by reparametrising
the weights so every optimiser step keeps them); :func:`project_weights` maps
arbitrary weights onto the constraint set and :func:`find_violation` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._data import IRData, frozen_array, uniform_value
from .errors import ConstraintError, ValidationError

__all__ = [
    "Constraint",
    "DalesLaw",
    "SignMask",
    "ConnectivityMask",
    "NoSelfConnections",
    "WeightBounds",
    "BalancedInit",
    "ResolvedConstraints",
    "resolve",
    "project_weights",
    "find_violation",
    "balance_ei",
    "CONSTRAINT_TYPES",
]


@dataclass(frozen=True, eq=False)
class Constraint(IRData):
    """Base class of constraints."""

    def describe(self) -> str:
        """One short human-readable phrase for summaries."""
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class DalesLaw(Constraint):
    """Dale's law: neuron ``k`` is excitatory if ``sign[k] == +1``, inhibitory if ``-1``.

    Attach it to the presynaptic node; all outgoing weights of neuron ``k`` then
    have sign ``sign[k]`` (a weight may also be exactly zero).
    """

    sign: Any

    def __post_init__(self) -> None:
        arr = frozen_array(self.sign, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isin(arr, (-1.0, 1.0))):
            raise ValidationError(
                f"DalesLaw.sign: expected a non-empty 1-D array of +1 (excitatory) and -1 (inhibitory), got {self.sign!r}"
            )
        self._set("sign", frozen_array(arr, dtype=np.int8))

    @classmethod
    def from_fraction(cls, size: int, excitatory_fraction: float) -> "DalesLaw":
        """The first ``round(excitatory_fraction*size)`` neurons excitatory, the rest inhibitory."""
        if not 0.0 <= float(excitatory_fraction) <= 1.0:
            raise ValidationError(
                f"DalesLaw.excitatory_fraction: expected a value in [0, 1], got {excitatory_fraction!r}"
            )
        n_exc = int(round(float(excitatory_fraction) * size))
        return cls(np.where(np.arange(size) < n_exc, 1, -1))

    @property
    def n_excitatory(self) -> int:
        return int(np.sum(self.sign > 0))

    @property
    def n_inhibitory(self) -> int:
        return int(np.sum(self.sign < 0))

    def describe(self) -> str:
        return f"Dale {self.n_excitatory}E/{self.n_inhibitory}I"


@dataclass(frozen=True, eq=False)
class SignMask(Constraint):
    """Fixed signs per synapse, shape ``(n_post, n_pre)``: +1, -1, or 0 (free)."""

    sign: Any

    def __post_init__(self) -> None:
        arr = frozen_array(self.sign, dtype=np.float64)
        if arr.ndim != 2 or not np.all(np.isin(arr, (-1.0, 0.0, 1.0))):
            bad = arr[~np.isin(arr, (-1.0, 0.0, 1.0))]
            got = f"shape {arr.shape}" if arr.ndim != 2 else f"the value {bad[0]:g} ({bad.size} such entries)"
            raise ValidationError(f"SignMask.sign: expected a 2-D array (n_post, n_pre) of -1, 0 and +1, got {got}")
        self._set("sign", frozen_array(arr, dtype=np.int8))

    def describe(self) -> str:
        return f"signs {int(np.sum(self.sign > 0))}+/{int(np.sum(self.sign < 0))}-"


@dataclass(frozen=True, eq=False)
class ConnectivityMask(Constraint):
    """Which synapses exist, shape ``(n_post, n_pre)``; absent synapses stay exactly zero."""

    mask: Any

    def __post_init__(self) -> None:
        arr = np.asarray(self.mask)
        if arr.ndim != 2 or not (arr.dtype == bool or np.all(np.isin(arr, (0, 1)))):
            got = f"{arr.dtype} of shape {arr.shape}"
            if arr.ndim == 2 and arr.dtype != object:
                bad = arr[~np.isin(arr, (0, 1))]
                got += f" holding the value {bad[0]!r} ({bad.size} such entries)" if bad.size else ""
            raise ValidationError(
                f"ConnectivityMask.mask: expected a 2-D boolean array (n_post, n_pre) of 0/1 or True/False, got {got}"
            )
        self._set("mask", frozen_array(arr, dtype=bool))

    def describe(self) -> str:
        return f"mask {self.mask.mean():.0%}"


@dataclass(frozen=True, eq=False)
class NoSelfConnections(Constraint):
    """No synapse from neuron ``k`` to itself (a recurrent projection's diagonal is zero)."""

    def describe(self) -> str:
        return "no self"


@dataclass(frozen=True, eq=False)
class WeightBounds(Constraint):
    """Every (signed) weight lies in ``[low, high]``."""

    low: float = -np.inf
    high: float = np.inf

    def __post_init__(self) -> None:
        low, high = float(self.low), float(self.high)
        if np.isnan(low) or np.isnan(high) or low > high:
            raise ValidationError(f"WeightBounds: expected low <= high, got low={self.low!r}, high={self.high!r}")
        self._set("low", low)
        self._set("high", high)

    def describe(self) -> str:
        return f"bounds [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True, eq=False)
class BalancedInit(Constraint):
    """Record that the weights were initialised E/I balanced.

    At initialisation, for every postsynaptic neuron ``i``,
    ``sum_j W[i, j] * rate[j] == 0``: the expected excitatory and inhibitory
    inputs cancel (``pre_rates=None`` means equal presynaptic rates).  It is an
    initialisation property: training is free to move away from it.
    """

    pre_rates: Any = None

    def __post_init__(self) -> None:
        if self.pre_rates is not None:
            arr = frozen_array(self.pre_rates)
            if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValidationError(
                    f"BalancedInit.pre_rates: expected a 1-D array of finite non-negative rates, got {self.pre_rates!r}"
                )
            self._set("pre_rates", arr)

    def describe(self) -> str:
        return "E/I balanced init"


CONSTRAINT_TYPES: dict[str, type[Constraint]] = {
    cls.__name__: cls
    for cls in (DalesLaw, SignMask, ConnectivityMask, NoSelfConnections, WeightBounds, BalancedInit)
}


@dataclass(frozen=True, eq=False)
class ResolvedConstraints(IRData):
    """The constraints on one projection, one entry per stored weight.

    ``sign``: +1/-1 where the sign is fixed, 0 where free.  ``mask``: False where
    the synapse is absent (weight exactly 0).  ``low``/``high``: bounds on the
    signed weight.  All arrays have the shape of the projection's ``weight``.
    An array whose entries are all equal (no Dale's law, no mask, uniform
    bounds: the usual case) is a read-only broadcast view of that one value
    (``np.broadcast_to``), so it costs no memory per synapse; it reads, indexes
    and compares like the full array.
    """

    sign: Any
    mask: Any
    low: Any
    high: Any

    def __deepcopy__(self, memo: dict) -> "ResolvedConstraints":
        return self  # immutable (frozen, read-only arrays); a copy would materialise the broadcast views

    @property
    def has_sign(self) -> bool:
        """True when some weight has a fixed sign."""
        u = uniform_value(self.sign)
        return bool(u != 0) if u is not None else bool(np.any(self.sign))

    @property
    def has_mask(self) -> bool:
        """True when some synapse is absent."""
        u = uniform_value(self.mask)
        return (not bool(u)) if u is not None else not bool(np.all(self.mask))

    @property
    def has_bounds(self) -> bool:
        """True when some weight has a finite bound."""
        def finite(arr: np.ndarray) -> bool:
            u = uniform_value(arr)
            return bool(np.isfinite(u)) if u is not None else bool(np.any(np.isfinite(arr)))
        return finite(self.low) or finite(self.high)

    @property
    def trivial(self) -> bool:
        """True when no constraint restricts any weight."""
        return not (self.has_sign or self.has_mask or self.has_bounds)


def _uniform(value: Any, shape: tuple, dtype: Any) -> np.ndarray:
    """``value`` for every weight of ``shape``: a read-only broadcast view, no memory per weight."""
    return np.broadcast_to(np.array(value, dtype=dtype), shape)


def _owned(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """A fresh array made here, frozen without a further copy (read-only, C-contiguous, ``dtype``)."""
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.base is not None or arr.flags.writeable is False:
        return frozen_array(arr, dtype)
    arr.setflags(write=False)
    return arr


def resolve(node_id: str, projection: Any, pre_dale: Optional[DalesLaw], is_self_projection: bool) -> ResolvedConstraints:
    """Combine the projection's constraints and the presynaptic Dale signs.

    ``projection`` is a :class:`~ntgraph.ir.Projection`; its ``synapse_index()``
    gives the (post, pre) coordinates of every stored weight.  Raises
    :class:`ConstraintError` naming the projection when two constraints
    disagree or a constraint does not fit the projection's shape.

    Signs, masks and bounds that are the same for every weight (for instance
    no Dale's law and no mask) come back as broadcast views of one value
    (see :class:`ResolvedConstraints`); the coordinates are built only when a
    constraint needs them.
    """
    shape = projection.weight.shape
    n_post, n_pre = projection.n_post, projection.n_pre
    sign: Optional[np.ndarray] = None  # None: 0 (free) everywhere
    mask: Optional[np.ndarray] = None  # None: True everywhere
    low: Any = -np.inf  # a float, or an array of the weight's shape
    high: Any = np.inf
    kind = type(projection).__name__
    coords: list = []

    def index() -> tuple[np.ndarray, np.ndarray]:
        if not coords:
            coords.extend(projection.synapse_index())
        return coords[0], coords[1]

    if pre_dale is not None:
        if pre_dale.sign.shape != (n_pre,):
            raise ConstraintError(
                f"{kind} '{node_id}': DalesLaw of the source has {pre_dale.sign.size} signs, expected {n_pre} (one per presynaptic neuron)"
            )
        sign = pre_dale.sign[index()[1]].reshape(shape).astype(np.int8)

    for c in projection.constraints:
        if isinstance(c, SignMask):
            if c.sign.shape != (n_post, n_pre):
                raise ConstraintError(
                    f"{kind} '{node_id}'.SignMask.sign: expected shape {(n_post, n_pre)}, got {c.sign.shape}"
                )
            post, pre = index()
            fixed = c.sign[post, pre].reshape(shape)
            current = np.zeros(shape, dtype=np.int8) if sign is None else sign
            clash = (fixed != 0) & (current != 0) & (fixed != current)
            if np.any(clash):
                k = np.argwhere(clash)[0]
                raise ConstraintError(
                    f"{kind} '{node_id}'.SignMask: sign {int(fixed[tuple(k)])} at synapse {tuple(int(x) for x in k)} "
                    f"contradicts Dale's law of the source (sign {int(current[tuple(k)])})"
                )
            sign = np.where(fixed != 0, fixed, current).astype(np.int8)
        elif isinstance(c, ConnectivityMask):
            if c.mask.shape != (n_post, n_pre):
                raise ConstraintError(
                    f"{kind} '{node_id}'.ConnectivityMask.mask: expected shape {(n_post, n_pre)}, got {c.mask.shape}"
                )
            post, pre = index()
            present = c.mask[post, pre].reshape(shape)
            mask = present if mask is None else mask & present
        elif isinstance(c, NoSelfConnections):
            if not is_self_projection:
                raise ConstraintError(
                    f"{kind} '{node_id}'.NoSelfConnections: expected a projection from a node to itself"
                )
            post, pre = index()
            present = (post != pre).reshape(shape)
            mask = present if mask is None else mask & present
        elif isinstance(c, WeightBounds):
            low = np.maximum(low, c.low)
            high = np.minimum(high, c.high)
        elif isinstance(c, (BalancedInit,)):
            pass  # initialisation only
        elif isinstance(c, DalesLaw):
            raise ConstraintError(
                f"{kind} '{node_id}'.constraints: DalesLaw belongs on the presynaptic Input or Population, not on a projection"
            )
        else:
            raise ConstraintError(f"{kind} '{node_id}'.constraints: unknown constraint {type(c).__name__}")
    coords.clear()

    # A fixed sign narrows the bounds; an empty interval is an error.
    if sign is not None:
        low = np.where(sign > 0, np.maximum(low, 0.0), low)
        high = np.where(sign < 0, np.minimum(high, 0.0), high)
    if np.ndim(low) or np.ndim(high) or float(low) > float(high):
        full = (lambda a, dt: a if a is not None else _uniform(dt(0 if dt is np.int8 else 1), shape, dt))
        sign_f, mask_f = full(sign, np.int8), full(mask, bool)
        low_f, high_f = np.broadcast_to(low, shape), np.broadcast_to(high, shape)
        empty = mask_f & (low_f > high_f)
        if np.any(empty):
            k = tuple(int(x) for x in np.argwhere(empty)[0])
            raise ConstraintError(
                f"{kind} '{node_id}'.WeightBounds: no weight satisfies sign {int(sign_f[k])} and bounds "
                f"[{low_f[k]:g}, {high_f[k]:g}] at synapse {k}"
            )
    return ResolvedConstraints(
        sign=_uniform(0, shape, np.int8) if sign is None else _owned(sign, np.int8),
        mask=_uniform(True, shape, bool) if mask is None else _owned(mask, bool),
        low=_owned(low, np.float64) if np.ndim(low) else _uniform(low, shape, np.float64),
        high=_owned(high, np.float64) if np.ndim(high) else _uniform(high, shape, np.float64),
    )


def project_weights(weight: np.ndarray, rc: ResolvedConstraints) -> np.ndarray:
    """Map ``weight`` onto the constraint set: signs by magnitude, absent synapses to 0, then clip.

    ``w -> clip(where(sign != 0, sign*|w|, w), low, high) * mask``.  This is the
    same map the torch backend applies to its free parameters at every forward.
    Returns a new array; the steps a constraint does not need are skipped.
    """
    w = np.asarray(weight, dtype=np.float64)
    out = None
    if rc.has_sign:
        out = w = np.where(rc.sign != 0, rc.sign * np.abs(w), w)
    if rc.has_bounds:
        out = w = np.clip(w, rc.low, rc.high)
    if rc.has_mask:
        out = w = np.where(rc.mask, w, 0.0)
    return np.array(w) if out is None else out


def find_violation(weight: np.ndarray, rc: ResolvedConstraints) -> Optional[str]:
    """Describe the first weight that breaks the constraints, or return None."""
    w = np.asarray(weight, dtype=np.float64)
    checks = (
        (rc.has_mask, lambda: ~rc.mask & (w != 0), "an absent synapse (masked) must be exactly 0"),
        (rc.has_sign, lambda: (rc.sign > 0) & (w < 0), "must be >= 0 (excitatory / positive sign)"),
        (rc.has_sign, lambda: (rc.sign < 0) & (w > 0), "must be <= 0 (inhibitory / negative sign)"),
        (rc.has_bounds, lambda: rc.mask & ((w < rc.low) | (w > rc.high)), "is outside its bounds"),
    )
    for needed, check, why in checks:
        if not needed:  # this constraint is absent: no weight can break it
            continue
        bad = check()
        if np.any(bad):
            k = tuple(int(x) for x in np.argwhere(bad)[0])
            bounds = f" [{rc.low[k]:g}, {rc.high[k]:g}]" if "bounds" in why else ""
            return f"weight{list(k)} = {w[k]:g} {why}{bounds} ({int(np.sum(bad))} such weights)"
    return None


def balance_ei(weight: np.ndarray, pre_sign: np.ndarray, pre_rates: Optional[np.ndarray] = None,
               node_id: str = "?") -> np.ndarray:
    """Scale the inhibitory weights of a dense ``(n_post, n_pre)`` matrix so E and I inputs cancel.

    For every row ``i`` with excitatory drive ``E_i = sum_{j exc} W[i,j]*rate[j]``
    and inhibitory drive ``I_i = sum_{j inh} W[i,j]*rate[j]`` (negative), the
    inhibitory weights are multiplied by ``E_i / -I_i``, so ``E_i + I_i = 0``.
    Rows that receive no input stay zero; a row with excitatory but no
    inhibitory input (or the reverse) cannot be balanced and raises
    :class:`ConstraintError` naming the row.
    """
    w = np.array(weight, dtype=np.float64)
    rates = np.ones(w.shape[1]) if pre_rates is None else np.asarray(pre_rates, dtype=np.float64)
    exc = pre_sign > 0
    drive_e = w[:, exc] @ rates[exc]
    drive_i = w[:, ~exc] @ rates[~exc]
    unbalanceable = (drive_e > 0) != (drive_i < 0)
    if np.any(unbalanceable):
        i = int(np.argmax(unbalanceable))
        raise ConstraintError(
            f"Projection '{node_id}'.BalancedInit: postsynaptic neuron {i} receives excitatory drive {drive_e[i]:g} "
            f"and inhibitory drive {drive_i[i]:g}; both must be non-zero to balance "
            f"({int(np.sum(unbalanceable))} such neurons; use denser connectivity or more inhibitory neurons)"
        )
    scale = np.where(drive_i < 0, drive_e / np.where(drive_i < 0, -drive_i, 1.0), 1.0)
    w[:, ~exc] *= scale[:, None]
    return w
