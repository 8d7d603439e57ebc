"""IR node payloads: inputs, outputs, neuron populations and synaptic projections.

A :class:`~ntgraph.graph.Graph` stores one payload per node.  Payloads are
frozen dataclasses (keyword-only) of numpy arrays and plain values; they know
nothing about the graph around them, so checks that need neighbours (shapes
between nodes, cycles) live in :mod:`ntgraph.validate`.

Weights follow the torch/NIR convention ``(n_post, n_pre)``: the input current
of a target population is ``I = W @ x_pre (+ bias)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._data import IRData, frozen_array
from .constraints import Constraint, DalesLaw
from .errors import ConstraintError, ShapeError, ValidationError
from .models import NeuronModel

__all__ = [
    "Node",
    "Input",
    "Output",
    "Population",
    "Projection",
    "Dense",
    "Sparse",
    "OneToOne",
    "NODE_TYPES",
]


def _check_size(owner: str, size: Any) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or int(size) < 1:
        raise ValidationError(f"{owner}.size: expected a positive integer, got {size!r}")
    return int(size)


def _check_constraints(owner: str, constraints: Any, allowed: tuple = (Constraint,)) -> tuple:
    constraints = tuple(constraints)
    for c in constraints:
        if not isinstance(c, allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise ValidationError(f"{owner}.constraints: expected {names} objects, got {c!r}")
    return constraints


def _check_dale(owner: str, constraints: tuple, size: int) -> None:
    """A DalesLaw must give exactly one sign per neuron / channel of its node."""
    for c in constraints:
        if isinstance(c, DalesLaw) and c.sign.shape != (size,):
            raise ConstraintError(
                f"{owner}.constraints: DalesLaw has {c.sign.size} signs, expected {size} (one per neuron)"
            )


def _index_array(owner: str, values: Any) -> np.ndarray:
    """Synapse indices as a frozen array: int32 when given as int32 (4 bytes per synapse), else int64."""
    arr = np.asarray(values)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValidationError(f"{owner}: expected integer indices, got dtype {arr.dtype}")
    return frozen_array(arr, dtype=np.int32 if arr.dtype == np.int32 else np.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class Node(IRData):
    """Base class of node payloads."""

    @property
    def kind(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """The payload's details for ``str(graph)``."""
        return ""


@dataclass(frozen=True, eq=False, kw_only=True)
class Input(Node):
    """An external input of ``size`` channels, fed one tensor ``[T, batch, size]`` per run.

    ``constraints`` may hold a :class:`~ntgraph.constraints.DalesLaw` giving each
    input channel a sign for the projections that leave it.
    """

    size: int
    constraints: tuple = ()

    def __post_init__(self) -> None:
        self._set("size", _check_size("Input", self.size))
        self._set("constraints", _check_constraints("Input", self.constraints, (DalesLaw,)))
        _check_dale("Input", self.constraints, self.size)

    @property
    def dale(self) -> Optional[DalesLaw]:
        return next((c for c in self.constraints if isinstance(c, DalesLaw)), None)

    def describe(self) -> str:
        return f"size={self.size}"


@dataclass(frozen=True, eq=False, kw_only=True)
class Output(Node):
    """A named output: the primary output variable of its one source node, ``[T, batch, size]``."""

    size: int

    def __post_init__(self) -> None:
        self._set("size", _check_size("Output", self.size))

    def describe(self) -> str:
        return f"size={self.size}"


@dataclass(frozen=True, eq=False, kw_only=True)
class Population(Node):
    """``size`` neurons of one :class:`~ntgraph.models.NeuronModel`.

    Scalar model parameters are broadcast to one value per neuron.
    ``learnable`` names the model parameters a trainer may change (e.g.
    ``("tau", "mu", "r")`` for Wilson-Cowan units).  ``constraints`` may hold a
    :class:`~ntgraph.constraints.DalesLaw` for the projections that leave it.
    """

    model: NeuronModel
    size: int
    constraints: tuple = ()
    learnable: tuple = ()

    def __post_init__(self) -> None:
        size = _check_size("Population", self.size)
        self._set("size", size)
        if not isinstance(self.model, NeuronModel):
            raise ValidationError(f"Population.model: expected a NeuronModel (LIF, ALIF, ...), got {self.model!r}")
        self._set("model", self.model.broadcast(size))
        self._set("constraints", _check_constraints("Population", self.constraints, (DalesLaw,)))
        _check_dale("Population", self.constraints, size)
        learnable = tuple(self.learnable)
        names = self.model.param_names()
        for name in learnable:
            if name not in names:
                raise ValidationError(
                    f"Population.learnable: {name!r} is not a parameter of {type(self.model).__name__}; "
                    f"expected some of {', '.join(names)}"
                )
        self._set("learnable", learnable)

    @property
    def dale(self) -> Optional[DalesLaw]:
        return next((c for c in self.constraints if isinstance(c, DalesLaw)), None)

    def describe(self) -> str:
        text = f"size={self.size} {self.model.describe()}"
        if self.learnable:
            text += f" learnable={','.join(self.learnable)}"
        return text


@dataclass(frozen=True, eq=False, kw_only=True)
class Projection(Node):
    """Base class of synaptic projections: one source node, one target population.

    ``delay`` (integer steps, >= 0): the target at step ``t`` receives the
    source's output of step ``t - delay`` (zero before the start).  A projection
    with ``delay >= 1`` cuts cycles; see ``docs/semantics.md``.
    ``learnable`` names the arrays a trainer may change (``"weight"``, ``"bias"``).
    """

    delay: int = 0
    constraints: tuple = ()
    learnable: tuple = ("weight",)

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if isinstance(self.delay, (bool, np.bool_)) or not isinstance(self.delay, (int, np.integer)) or self.delay < 0:
            raise ValidationError(f"{kind}.delay: expected a non-negative integer number of steps, got {self.delay!r}")
        self._set("delay", int(self.delay))
        self._set("constraints", _check_constraints(kind, self.constraints))
        learnable = tuple(self.learnable)
        for name in learnable:
            if name not in self.array_names() or getattr(self, name) is None:
                raise ValidationError(
                    f"{kind}.learnable: {name!r} is not an array of this projection; expected some of "
                    f"{', '.join(n for n in self.array_names() if getattr(self, n) is not None)}"
                )
        self._set("learnable", learnable)

    # Subclasses provide ``weight`` (an array), ``n_post`` and ``n_pre``.

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        """Names of the trainable-array fields."""
        return ("weight",)

    def synapse_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(post, pre) coordinates of every stored weight, shaped like ``weight``."""
        raise NotImplementedError

    def dense_weight(self) -> np.ndarray:
        """The weights as a dense ``(n_post, n_pre)`` matrix."""
        dense = np.zeros((self.n_post, self.n_pre))
        post, pre = self.synapse_index()
        np.add.at(dense, (post.ravel(), pre.ravel()), np.asarray(self.weight).ravel())
        return dense

    @property
    def n_synapses(self) -> int:
        """Number of non-zero weights."""
        return int(np.count_nonzero(self.weight))

    def describe(self) -> str:
        text = f"{self.n_pre}->{self.n_post} synapses={self.n_synapses}"
        if self.delay:
            text += f" delay={self.delay}"
        return text


@dataclass(frozen=True, eq=False, kw_only=True)
class Dense(Projection):
    """All-to-all weights ``weight`` of shape ``(n_post, n_pre)`` and an optional ``bias`` ``(n_post,)``.

    Masked (sparse-connectivity) projections are Dense projections with a
    :class:`~ntgraph.constraints.ConnectivityMask`.
    """

    weight: Any
    bias: Any = None

    def __post_init__(self) -> None:
        w = frozen_array(self.weight)
        if w.ndim != 2:
            raise ShapeError(f"Dense.weight: expected a 2-D array (n_post, n_pre), got shape {w.shape}")
        self._set("weight", w)
        if self.bias is not None:
            b = frozen_array(self.bias)
            if b.shape != (w.shape[0],):
                raise ShapeError(f"Dense.bias: expected shape ({w.shape[0]},), got {b.shape}")
            self._set("bias", b)
        super().__post_init__()

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        return ("weight", "bias")

    @property
    def n_post(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[0])

    @property
    def n_pre(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[1])

    def synapse_index(self) -> tuple[np.ndarray, np.ndarray]:
        post, pre = np.indices(self.weight.shape)
        return post, pre

    def dense_weight(self) -> np.ndarray:
        return np.array(self.weight)


@dataclass(frozen=True, eq=False, kw_only=True)
class Sparse(Projection):
    """Sparse weights in coordinate form: synapse ``k`` goes ``pre_index[k] -> post_index[k]``.

    ``weight``, ``post_index`` and ``pre_index`` have one entry per synapse;
    ``n_post`` and ``n_pre`` give the sizes of the target and the source.
    Duplicate (post, pre) pairs add up.  The indices are stored as int64, or as
    int32 when given as int32 arrays (half the memory for large networks; equal
    graphs compare equal whatever their index dtype); :meth:`synapse_index`
    always returns int64 copies.
    """

    weight: Any
    post_index: Any
    pre_index: Any
    n_post: int
    n_pre: int

    def __post_init__(self) -> None:
        w = frozen_array(self.weight)
        post = _index_array("Sparse.post_index", self.post_index)
        pre = _index_array("Sparse.pre_index", self.pre_index)
        if not (w.ndim == post.ndim == pre.ndim == 1 and w.shape == post.shape == pre.shape):
            raise ShapeError(
                f"Sparse: weight, post_index and pre_index must be 1-D of equal length, got shapes "
                f"{w.shape}, {post.shape}, {pre.shape}"
            )
        n_post = _check_size("Sparse.n_post", self.n_post)
        n_pre = _check_size("Sparse.n_pre", self.n_pre)
        for name, idx, n in (("post_index", post, n_post), ("pre_index", pre, n_pre)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ShapeError(f"Sparse.{name}: expected indices in [0, {n}), got values in [{idx.min()}, {idx.max()}]")
        self._set("weight", w)
        self._set("post_index", post)
        self._set("pre_index", pre)
        self._set("n_post", n_post)
        self._set("n_pre", n_pre)
        super().__post_init__()

    def synapse_index(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.post_index, dtype=np.int64), np.array(self.pre_index, dtype=np.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class OneToOne(Projection):
    """Neuron ``k`` of the source drives neuron ``k`` of the target with ``weight[k]``."""

    weight: Any

    def __post_init__(self) -> None:
        w = frozen_array(self.weight)
        if w.ndim != 1 or w.size == 0:
            raise ShapeError(f"OneToOne.weight: expected a non-empty 1-D array (one weight per neuron), got shape {w.shape}")
        self._set("weight", w)
        super().__post_init__()

    @property
    def n_post(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[0])

    @property
    def n_pre(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[0])

    def synapse_index(self) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(self.weight.shape[0])
        return k, k


NODE_TYPES: dict[str, type[Node]] = {cls.__name__: cls for cls in (Input, Output, Population, Dense, Sparse, OneToOne)}
