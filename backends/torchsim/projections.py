"""Projections of the torch backend: constrained weights and how they act.

A projection keeps a free parameter ``weight`` (initialised to the IR weights)
and maps it onto its constraints at every forward pass::

    W = where(mask, clip(where(sign != 0, sign*|weight|, weight), low, high), 0)

so whatever an optimiser does to ``weight``, the effective weights obey Dale's
law, fixed signs, bounds and connectivity (absent synapses stay exactly 0).
This is the same map as :func:`ntgraph.constraints.project_weights`.

Two fast paths, both exact (same sums as the dense arithmetic, so results agree
to rounding; ``tests/test_sparse_event.py`` compares them at float64):

* **Sparse projections stay sparse** (:class:`SparseProjection`): the synapses
  are kept as a CSR matrix ``S`` (``n_post x n_pre``; the trainable values are
  the per-synapse ``weight``), ``I = (S @ x^T)^T``, and the backward pass is
  sparse too (:class:`SparseMatmul`).  Memory is ``O(synapses)``; no
  ``n_post x n_pre`` array is ever built and only existing synapses get a gradient.
* **Event-driven dense projections** (:class:`EventMatmul`): spike tensors
  are binary and mostly zero, so ``x @ W^T`` over ``M`` rows needs only the
  rows of ``W^T`` of the active inputs.  :class:`DenseProjection` measures the
  density of ``x`` when ``x`` has at least :data:`EVENT_MIN_ROWS` rows (the
  all-steps-at-once input drive; a LIF scan's own recurrent product is
  decided per step by :class:`~backends.torchsim.events.StepEvents` from the
  same ``event_mode`` and ``event_threshold``) and the
  projection has at least :data:`EVENT_MIN_OUTPUTS` (128) outputs (narrower
  projections go dense without looking at ``x``), and uses the event path at or
  below :data:`EVENT_DENSITY_THRESHOLD` (0.05) (both calibrated here, see there);
  :func:`set_event_driven` sets them or forces either path.  The density check
  and the event extraction share one pass: the events
  (:func:`~backends.torchsim.events.row_events`, row by row) are extracted once,
  the density is their count over ``x.numel()``, and the event path reuses
  them.  Only right after a dense input (last measured density above
  the threshold) is the density measured by the cheaper ``count_nonzero`` first,
  so a stream of dense inputs does not pay for extracting discarded events; the
  path chosen is the same either way (it always follows the exact density).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ntgraph.constraints import ResolvedConstraints, project_weights
from ntgraph.errors import ValidationError
from ntgraph.ir import Dense, Projection, Sparse

from .events import RowEvents, attached_events, compiled_extraction, row_events

__all__ = ["ProjectionModule", "DenseProjection", "SparseProjection", "OneToOneProjection", "SparseMatmul",
           "EventMatmul", "event_linear", "set_event_driven", "EVENT_DENSITY_THRESHOLD", "EVENT_MIN_ROWS",
           "EVENT_MIN_OUTPUTS", "SPARSE_EVENT_FRACTION", "SPARSE_EVENT_FRACTION_ROWS"]

#: Input density (fraction of nonzero entries) at or below which ``mode="auto"`` takes the event-driven path
#: (for projections with at least :data:`EVENT_MIN_OUTPUTS` outputs); 0 turns the density check off.
#: Calibrated on the 2-core development machine with ``benchmarks/event_threshold.py`` and whole SHD-shaped
#: training/inference steps (docs/performance.md, "Event-driven input projections" and the sixth round):
#: with the NumPy event extraction (2026-11-23, quiet, 2 threads, 6400 x 700 inputs) forward + weight
#: gradient by events won up to a density of 0.05 at H=128 and 256 and 0.1 at H=512.  Recalibrate on another
#: machine and set it with :func:`set_event_driven`.
EVENT_DENSITY_THRESHOLD = 0.05
#: ``mode="auto"`` takes the event path only for projections with at least this many outputs (``n_post``):
#: the index extraction over ``x`` costs the same for any ``n_post`` and is not repaid by small outputs.
#: Measured at 3% density, 2 threads: forward + weight gradient 1.39x faster by events at 128 outputs, 0.84x
#: at 64; whole (100, 64, 128) SHD steps 4-13% faster with 128 than with the former 256.
EVENT_MIN_OUTPUTS = 128
#: The event path is considered only for inputs of at least this many rows (``T*batch``): the density
#: check and the index bookkeeping cost more than they save on one step's ``[batch, n]``.
EVENT_MIN_ROWS = 1024
#: A projection keeps its event-extraction mask (``x != 0``, one byte per input entry) between calls only up to
#: this many entries (32 MiB).
_EVENT_MASK_KEEP = 1 << 25


def _tensor(arr: np.ndarray) -> Tensor:
    return torch.tensor(np.array(arr), dtype=torch.float64)  # cast once by module.to(dtype)


class ProjectionModule(nn.Module):
    """Base: a constrained weight array and ``apply(x, W)``, ``x [..., n_pre] -> [..., n_post]``."""

    def __init__(self, node_id: str, payload: Projection, constraints: ResolvedConstraints) -> None:
        super().__init__()
        self.node_id = node_id
        self.payload = payload
        self.constraints = constraints
        self.n_pre, self.n_post = payload.n_pre, payload.n_post
        self.learnable = tuple(payload.learnable)
        self._register("weight", payload.weight)
        self.has_sign = constraints.has_sign  # uniform (broadcast) constraint arrays are read without a pass
        self.has_mask = constraints.has_mask
        self.has_bounds = constraints.has_bounds
        if self.has_sign:
            self.register_buffer("sign", _tensor(constraints.sign))
        if self.has_mask:
            self.register_buffer("mask", torch.tensor(np.array(constraints.mask), dtype=torch.bool))
        if self.has_bounds:
            self.register_buffer("low", _tensor(constraints.low))
            self.register_buffer("high", _tensor(constraints.high))

    def _register(self, name: str, value: np.ndarray) -> None:
        t = _tensor(value)
        if name in self.learnable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    def effective_weight(self) -> Tensor:
        """The weights after the constraint map (see the module docstring)."""
        w = self.weight
        if self.has_sign:
            w = torch.where(self.sign != 0, self.sign * w.abs(), w)
        if self.has_bounds:
            w = torch.clamp(w, self.low, self.high)
        if self.has_mask:
            w = torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        return w

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def to_payload(self) -> Projection:
        """The IR payload with the current effective weights (float64, constraints re-applied exactly)."""
        w = self.effective_weight().detach().cpu().double().numpy()
        return self.payload.replace(weight=project_weights(w, self.constraints))


class EventMatmul(torch.autograd.Function):
    """``y = x @ W^T`` computed from the nonzero entries ("events") of ``x`` only.

    With ``E`` the set of nonzero ``(m, i)`` of ``x`` (``[M, n_pre]``)::

        y[m, :]      = sum_{(m, i) in E} x[m, i] * W[:, i]          (forward)
        dL/dW[:, i]  = sum_{(m, i) in E} x[m, i] * dL/dy[m, :]       (weight gradient)
        dL/dx        = dL/dy @ W                                     (dense; only if x needs it)

    Both sums are embedding-bag sums over ``|E|`` rows of length ``n_post``
    (:mod:`~backends.torchsim.events`): ``O(|E| n_post)`` work instead of
    ``O(M n_pre n_post)``.  When every event is exactly 1 (spikes) the sums
    take no per-event weights.  The backward keeps the events (and their values
    unless all are 1) and ``W``.
    """

    @staticmethod
    def forward(ctx: Any, x2d: Tensor, w: Tensor,  # type: ignore[override]
                events: Optional[RowEvents] = None) -> Tensor:
        """``events``: :func:`~backends.torchsim.events.row_events` of ``x2d`` if already extracted."""
        if events is None:
            events = row_events(x2d)
        y = events.product(w.t().contiguous())
        ctx.events = events
        ctx.save_for_backward(w)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor):  # type: ignore[override]
        (w,) = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ w
        if ctx.needs_input_grad[1]:
            grad_w = ctx.events.weight_grad(grad_y)
        return grad_x, grad_w, None


def event_linear(x: Tensor, w: Tensor, bias: Optional[Tensor] = None, events: Optional[RowEvents] = None) -> Tensor:
    """``F.linear(x, w, bias)`` through :class:`EventMatmul` (``x [..., n_pre] -> [..., n_post]``).

    ``events``: the events of ``x`` (:func:`~backends.torchsim.events.row_events`) if already extracted.
    """
    lead = x.shape[:-1]
    y = EventMatmul.apply(x.reshape(-1, x.shape[-1]), w, events).reshape(*lead, w.shape[0])
    return y if bias is None else y + bias


class DenseProjection(ProjectionModule):
    """``I = x @ W.T + bias``, dense or event-driven (see the module docstring)."""

    def __init__(self, node_id: str, payload: Dense, constraints: ResolvedConstraints) -> None:
        super().__init__(node_id, payload, constraints)
        self.has_bias = payload.bias is not None
        if self.has_bias:
            self._register("bias", payload.bias)
        #: "auto" (by measured input density), "event" or "dense"; see :func:`set_event_driven`.
        self.event_mode = "auto"
        self.event_threshold = EVENT_DENSITY_THRESHOLD
        #: ``auto`` mode considers the event path only with at least this many outputs.
        self.event_min_outputs = EVENT_MIN_OUTPUTS
        #: The path the last call with >= EVENT_MIN_ROWS rows took, and the density it measured (diagnostics).
        self.last_path: Optional[str] = None
        self.last_density: Optional[float] = None
        #: The ``x != 0`` mask of the last event extraction, reused while the input shape stays the same.
        self._event_mask: Optional[Tensor] = None

    def use_events(self, x: Tensor) -> bool:
        """Whether ``x`` goes through the event-driven path (measures its density in ``auto`` mode)."""
        return self._route(x)[0]

    def _route(self, x: Tensor) -> tuple[bool, Optional[RowEvents]]:
        """(event path?, the events of ``x`` (:class:`~backends.torchsim.events.RowEvents`) if the density check
        extracted them).

        Events attached to ``x`` by the scan that computed it (:func:`~backends.torchsim.events.attached_events`)
        are used as they are, whatever the projection's width (there is no extraction to repay).
        In ``auto`` mode the density ``rho = |E| / x.numel()`` (``E``: nonzero entries) is measured only
        for inputs of at least :data:`EVENT_MIN_ROWS` rows into at least ``event_min_outputs`` outputs; it
        is taken from the extracted events themselves (one pass over ``x``), unless the last measured
        density was above the threshold, in which case ``count_nonzero`` decides first.
        """
        if self.event_mode == "dense" or x.dtype not in (torch.float32, torch.float64):
            return False, None
        rows = x.numel() // max(x.shape[-1], 1)
        known = attached_events(x)
        if known is not None:  # listed by the scan that computed x: no extraction pass, so any width pays
            density = known.count / max(x.numel(), 1)
            self.last_density = density
            use = self.event_mode == "event" or (rows >= EVENT_MIN_ROWS and 0.0 < self.event_threshold and
                                                 density <= self.event_threshold)
            return use, known if use else None
        if self.event_mode == "event":
            return True, None
        if rows < EVENT_MIN_ROWS or x.numel() == 0 or self.event_threshold <= 0.0:
            return False, None
        if self.weight.shape[0] < self.event_min_outputs:
            return False, None
        if self.last_density is not None and self.last_density > self.event_threshold:
            density = float(torch.count_nonzero(x)) / x.numel()
            self.last_density = density
            return density <= self.event_threshold, None
        events = row_events(x, None if compiled_extraction(x) else self._mask_for(x))
        density = events.count / x.numel()
        self.last_density = density
        if density > self.event_threshold:
            return False, None
        return True, events

    def _mask_for(self, x: Tensor) -> Tensor:
        """A ``bool`` buffer of ``x``'s shape for the uncompiled extraction's ``x != 0``, kept for the next call
        (no fresh pages each time) unless large: a long run's mask is not held."""
        mask = self._event_mask
        if mask is None or mask.shape != x.shape or mask.device != x.device:
            mask = torch.empty(x.shape, dtype=torch.bool, device=x.device)
            self._event_mask = mask if x.numel() <= _EVENT_MASK_KEEP else None
        return mask

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        bias = self.bias if self.has_bias else None
        use, events = self._route(x) if self.event_mode != "dense" else (False, None)
        if use:
            self.last_path = "event"
            return event_linear(x, w, bias, events)
        if x.numel() // max(x.shape[-1], 1) >= EVENT_MIN_ROWS:
            self.last_path = "dense"
        return F.linear(x, w, bias)

    def to_payload(self) -> Projection:
        payload = super().to_payload()
        if self.has_bias:
            payload = payload.replace(bias=self.bias.detach().cpu().double().numpy())
        return payload


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR tensor view of the synapses (torch warns that CSR support is "beta"; the ops used here are tested)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, dtype=values.dtype, device=values.device,
                                       check_invariants=False)


class SparseMatmul(torch.autograd.Function):
    """``y = (S @ x^T)^T`` with ``S`` the CSR matrix ``(crow, col, values)``, ``[n_post, n_pre]``.

    ``values`` (one per synapse, CSR order) and ``x`` (``[M, n_pre]``) are the
    differentiable inputs (``unique``: no duplicate ``(post, pre)`` pair, which
    the sampled product needs; otherwise the gradient is gathered)::

        dL/dvalues[k] = sum_m dL/dy[m, post_k] * x[m, pre_k]     (sampled dense-dense product)
        dL/dx         = (S^T @ dL/dy^T)^T                         (CSR of the transpose)

    so the gradient exists for stored synapses only.  ``t_perm`` reorders the
    values into the CSR order of ``S^T`` (``t_crow``, ``t_col``).
    """

    @staticmethod
    def forward(ctx: Any, values: Tensor, x2d: Tensor, crow: Tensor, col: Tensor, t_crow: Tensor, t_col: Tensor,
                t_perm: Tensor, n_post: int, unique: bool = True) -> Tensor:  # type: ignore[override]
        n_pre = x2d.shape[1]
        if values.numel() == 0:
            y = x2d.new_zeros(x2d.shape[0], n_post)
        else:
            y = (_csr(crow, col, values, (n_post, n_pre)) @ x2d.t()).t()
        ctx.save_for_backward(values, x2d, crow, col, t_crow, t_col, t_perm)
        ctx.n_post, ctx.unique = n_post, unique
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor):  # type: ignore[override]
        values, x2d, crow, col, t_crow, t_col, t_perm = ctx.saved_tensors
        n_post, n_pre = ctx.n_post, x2d.shape[1]
        grad_values = grad_x = None
        empty = values.numel() == 0
        if ctx.needs_input_grad[0]:
            if empty:
                grad_values = torch.zeros_like(values)
            elif ctx.unique:
                pattern = _csr(crow, col, torch.zeros_like(values), (n_post, n_pre))
                grad_values = torch.sparse.sampled_addmm(pattern, grad_y.t().contiguous(), x2d.to(grad_y.dtype),
                                                         beta=0.0).values()
            else:  # duplicate (post, pre) pairs, which sampled_addmm rejects: gather both sides, O(M * synapses)
                post = torch.repeat_interleave(torch.arange(n_post, device=crow.device), crow.diff().long())
                grad_values = (grad_y.index_select(1, post) * x2d.index_select(1, col).to(grad_y.dtype)).sum(0)
        if ctx.needs_input_grad[1]:
            if empty:
                grad_x = torch.zeros_like(x2d)
            else:
                st = _csr(t_crow, t_col, values[t_perm], (n_pre, n_post))
                grad_x = (st @ grad_y.t()).t()
        return grad_values, grad_x, None, None, None, None, None, None, None


#: Elements per slice when scanning synapse lists in numpy (bounds the temporaries to a few MiB).
_SCAN_CHUNK = 1 << 20
#: ``SparseProjection.event_mode = "auto"`` takes the event-driven path for a one-row input (batch 1, one
#: step) when the synapses of its active presynaptic entries are at most this fraction of all synapses
#: (what the CSR product touches).  Calibrated on the 2-core development machine (2026-11-23, float32,
#: 2 threads; 100k neurons x fan-in 100 and 10k x 1000): the event path was 1.5-1.7x faster at 5%,
#: 2.1-2.7x at 3%, and broke even near 9%.  See docs/performance.md, "Large sparse network".
SPARSE_EVENT_FRACTION = 0.05
#: The same for inputs of several rows (``T*batch`` rows at once, e.g. a projection from an Input), where
#: the CSR product is more efficient per synapse: the event path broke even near 1% there.
SPARSE_EVENT_FRACTION_ROWS = 0.005


def _index_dtype(*sizes: int) -> np.dtype:
    """int32 when every index and the synapse count fit in it (half the memory), else int64."""
    return np.dtype(np.int32) if max(sizes, default=0) < 2**31 - 1 else np.dtype(np.int64)


def _csr_order(post: np.ndarray, pre: np.ndarray, n_pre: int) -> tuple[Optional[np.ndarray], bool]:
    """(stable permutation into CSR order, or None when already in it; no duplicate (post, pre) pair).

    The key ``post*n_pre + pre`` is scanned in slices, so a synapse list already in CSR order (graphs
    built row by row) costs no per-synapse temporary at all.
    """
    prev, unique = None, True
    for k in range(0, post.size, _SCAN_CHUNK):
        key = post[k:k + _SCAN_CHUNK].astype(np.int64) * n_pre + pre[k:k + _SCAN_CHUNK]
        if prev is not None:
            key = np.concatenate(([prev], key))
        step = np.diff(key)
        if np.any(step < 0):
            break
        unique = unique and bool(np.all(step > 0))
        prev = key[-1]
    else:
        return None, unique
    key = post.astype(np.int64) * n_pre + pre
    order = np.argsort(key, kind="stable")
    key = key[order]
    return order, bool(np.all(key[1:] > key[:-1]))


def _bincount(keys: np.ndarray, n: int) -> np.ndarray:
    """``np.bincount(keys, minlength=n)`` in slices (bincount casts its input to int64 first)."""
    counts = np.zeros(n, dtype=np.int64)
    for k in range(0, keys.size, _SCAN_CHUNK):
        counts += np.bincount(keys[k:k + _SCAN_CHUNK], minlength=n)
    return counts


def _transpose_order(pre: np.ndarray, n_pre: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(row pointers of ``S^T``, the stable permutation ``t_perm`` that sorts the synapses by ``pre``).

    A counting sort, one slice at a time: synapse ``k`` of a slice goes to ``fill[pre_k]`` plus its rank
    among the slice's synapses with the same ``pre``, then ``fill`` advances by the slice's counts.  The
    only per-synapse array is ``t_perm`` itself (``dtype``).
    """
    t_crow = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(_bincount(pre, n_pre), out=t_crow[1:])
    fill = t_crow[:-1].copy()
    t_perm = np.empty(pre.size, dtype=dtype)
    for k in range(0, pre.size, _SCAN_CHUNK):
        chunk = pre[k:k + _SCAN_CHUNK]
        o = np.argsort(chunk, kind="stable")
        keys = chunk[o]
        rank = np.arange(keys.size) - np.searchsorted(keys, keys, side="left")
        t_perm[fill[keys] + rank] = o + k
        fill += np.bincount(chunk, minlength=n_pre)
    return t_crow.astype(dtype, copy=False), t_perm


def _reorder(arr: np.ndarray, order: Optional[np.ndarray]) -> np.ndarray:
    """``arr[order]``, keeping a uniform (broadcast) constraint array a broadcast view."""
    from ntgraph._data import uniform_value

    if order is None:
        return arr
    if arr.size and uniform_value(arr) is not None:
        return arr
    return np.asarray(arr)[order]


class SparseProjection(ProjectionModule):
    """``I[..., post[k]] += W[k] * x[..., pre[k]]`` over the synapse list, as a CSR sparse matmul.

    The synapses are kept sorted by ``(post, pre)`` (CSR order): ``weight``
    and the constraint buffers hold them in that order, and :meth:`to_payload`
    puts them back in the IR's order.  ``synapse_order[j]`` is the IR index of
    stored synapse ``j``.  No ``n_post x n_pre`` array is built.  Index buffers
    are int32 when the sizes allow (else int64): per synapse the module keeps
    the weight, ``post_index``, ``pre_index`` and the transpose's ``t_col`` and
    ``t_perm``.

    **Event-driven forward** (no gradient needed: inference, ``torch.no_grad``):
    with ``E`` the nonzero ``(m, j)`` of the input ``x [M, n_pre]`` (spikes:
    the active presynaptic neurons), only their outgoing synapses are touched,
    read from the CSR of ``S^T`` (``t_crow``, ``t_col``, ``t_perm``)::

        I[m, post_k] += W[k] * x[m, j]   for (m, j) in E and every synapse k with pre_k = j

    (one ``index_add``), ``O(|E| * fan-out)`` instead of the CSR product's
    ``O(M * synapses)``.  For each target the terms are added in increasing
    ``pre`` order, the order of the CSR row.  The weights are read in the
    transpose's order from a copy kept while ``weight`` is unchanged (one more
    value per synapse; see :meth:`_transposed_weight`).  ``event_mode``:
    ``"auto"`` (the event path when those synapses are at most
    ``event_fraction`` = :data:`SPARSE_EVENT_FRACTION` of all synapses for a
    one-row input, ``event_fraction_rows`` = :data:`SPARSE_EVENT_FRACTION_ROWS`
    of ``M * synapses`` for ``M > 1`` rows), ``"event"`` or ``"csr"`` (always the
    CSR product).  With gradients enabled the CSR product
    (:class:`SparseMatmul`) always runs.  ``last_path``: the path of the last call.
    """

    def __init__(self, node_id: str, payload: Sparse, constraints: ResolvedConstraints) -> None:
        post, pre = np.asarray(payload.post_index), np.asarray(payload.pre_index)
        n_syn = post.size
        order, unique = _csr_order(post, pre, payload.n_pre)
        # CSR order (stable); graphs built row by row are already in it, and then nothing moves or is copied
        if order is None:
            sorted_payload, sorted_cons = payload, constraints
        else:
            sorted_payload = payload.replace(weight=np.asarray(payload.weight)[order], post_index=post[order],
                                             pre_index=pre[order])
            sorted_cons = type(constraints)(**{k: _reorder(getattr(constraints, k), order)
                                               for k in ("sign", "mask", "low", "high")})
            post, pre = sorted_payload.post_index, sorted_payload.pre_index
        super().__init__(node_id, sorted_payload, sorted_cons)
        del sorted_payload, sorted_cons
        self.payload, self.constraints = payload, constraints  # the IR's order, for to_payload
        self._order = order  # None: the IR's order is the CSR order
        self.unique_synapses = unique
        idx = _index_dtype(payload.n_post, payload.n_pre, n_syn)
        self.register_buffer("post_index", torch.from_numpy(np.array(post, dtype=idx)))
        self.register_buffer("pre_index", torch.from_numpy(np.array(pre, dtype=idx)))
        crow = np.zeros(self.n_post + 1, dtype=np.int64)
        np.cumsum(_bincount(post, self.n_post), out=crow[1:])
        self.register_buffer("crow", torch.from_numpy(crow.astype(idx, copy=False)))
        t_crow, t_perm = _transpose_order(pre, self.n_pre, idx)  # CSR order of S^T
        self.register_buffer("t_crow", torch.from_numpy(t_crow))
        self.register_buffer("t_perm", torch.from_numpy(t_perm))
        t_col = np.empty(t_perm.size, dtype=idx)  # post[t_perm] in slices (indexing makes int64 index copies)
        for k in range(0, t_perm.size, _SCAN_CHUNK):
            np.take(post, t_perm[k:k + _SCAN_CHUNK], out=t_col[k:k + _SCAN_CHUNK])
        self.register_buffer("t_col", torch.from_numpy(t_col))
        #: "auto", "event" or "csr": see the class docstring.
        self.event_mode = "auto"
        self.event_fraction = SPARSE_EVENT_FRACTION
        self.event_fraction_rows = SPARSE_EVENT_FRACTION_ROWS
        self.last_path: Optional[str] = None

    def _register(self, name: str, value: np.ndarray) -> None:
        t = torch.from_numpy(np.array(value, dtype=np.float64))  # one float64 copy (cast once by module.to(dtype))
        if name in self.learnable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    @property
    def synapse_order(self) -> np.ndarray:
        """``synapse_order[j]``: the IR index of stored (CSR-order) synapse ``j``."""
        return np.arange(self.payload.weight.size) if self._order is None else self._order

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        if w.dtype not in (torch.float32, torch.float64):  # CPU CSR kernels: float32/64; gather/scatter otherwise
            out = x.new_zeros(*x.shape[:-1], self.n_post)
            return out.index_add(-1, self.post_index, x.index_select(-1, self.pre_index) * w)
        lead = x.shape[:-1]
        x2d = x.reshape(-1, x.shape[-1]).to(w.dtype)
        if self.event_mode != "csr" and not (torch.is_grad_enabled() and (w.requires_grad or x2d.requires_grad)):
            y = self._event_forward(x2d, w)
            if y is not None:
                self.last_path = "event"
                return y.reshape(*lead, self.n_post)
        self.last_path = "csr"
        y = SparseMatmul.apply(w, x2d, self.crow, self.pre_index, self.t_crow, self.t_col, self.t_perm, self.n_post,
                               self.unique_synapses)
        return y.reshape(*lead, self.n_post)

    def _event_forward(self, x2d: Tensor, w: Tensor) -> Optional[Tensor]:
        """The event-driven product (class docstring), or None when ``auto`` finds too many events."""
        m = x2d.shape[0]
        rows, cols = x2d.nonzero(as_tuple=True)
        starts = self.t_crow.index_select(0, cols).long()
        counts = self.t_crow.index_select(0, cols + 1).long() - starts
        n_ev = int(counts.sum())
        fraction = self.event_fraction if m == 1 else self.event_fraction_rows
        if self.event_mode == "auto" and n_ev > fraction * m * w.numel():
            return None
        out = x2d.new_zeros(m * self.n_post)
        if n_ev == 0:
            return out.view(m, self.n_post)
        keep = counts > 0
        if not bool(keep.all()):
            rows, cols, starts, counts = rows[keep], cols[keep], starts[keep], counts[keep]
        # Position in the transpose's CSR of every touched synapse, segment after segment: a running sum of
        # steps that are 1 inside a segment and jump from one segment's end to the next one's start.
        first = counts.cumsum(0) - counts
        step = torch.ones(n_ev, dtype=torch.long, device=x2d.device)
        step[0] = starts[0]
        step.index_put_((first[1:],), starts[1:] - starts[:-1] - counts[:-1] + 1)
        pos = step.cumsum_(0)
        del step
        target = self.t_col.index_select(0, pos)
        w_t = self._transposed_weight(w)
        vals = w_t.index_select(0, pos) if w_t is not None else w.index_select(0, self.t_perm.index_select(0, pos))
        del pos
        x_ev = x2d[rows, cols]
        if not bool((x_ev == 1).all()):  # spikes are 1: w * 1 == w exactly, so only graded inputs multiply
            vals = vals * torch.repeat_interleave(x_ev, counts, output_size=n_ev)
        if m > 1:
            target = target.long() + torch.repeat_interleave(rows * self.n_post, counts, output_size=n_ev)
        return out.index_add_(0, target, vals).view(m, self.n_post)

    def _transposed_weight(self, w: Tensor) -> Optional[Tensor]:
        """``w[t_perm]`` (the weights in the transpose's order, so the event path reads them in segments).

        Kept between calls while ``w`` is this module's own ``weight``, unchanged (same storage, same
        version counter): one extra value per synapse, made on the first event-driven call.  For other
        tensors (effective weights of a constrained projection, new at every forward) None: the event
        path then gathers through ``t_perm``.
        """
        if w is not self.weight:
            return None
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        cached = getattr(self, "_w_t", None)
        if cached is None or cached[0] != key:
            self._w_t = None  # free the stale copy first
            with torch.no_grad():
                cached = (key, w.detach().index_select(0, self.t_perm))
            self._w_t = cached
        return cached[1]

    def to_payload(self) -> Projection:
        w_sorted = self.effective_weight().detach().cpu().double().numpy()
        if self._order is None:
            w = w_sorted
        else:
            w = np.empty_like(w_sorted)
            w[self._order] = w_sorted
        return self.payload.replace(weight=project_weights(w, self.constraints))


def set_event_driven(module: nn.Module, mode: str = "auto", threshold: Optional[float] = None,
                     min_outputs: Optional[int] = None) -> None:
    """Choose dense or event-driven matmuls for every :class:`DenseProjection` in ``module``.

    ``mode``: ``"auto"`` (event-driven when the measured input density is at
    most ``threshold``, default :data:`EVENT_DENSITY_THRESHOLD`, and the
    projection has at least ``min_outputs`` outputs, default
    :data:`EVENT_MIN_OUTPUTS`), ``"event"`` (always) or ``"dense"`` (never).
    Pass one projection module to set it alone.
    """
    if mode not in ("auto", "event", "dense"):
        raise ValidationError(f"set_event_driven: mode={mode!r}; expected 'auto', 'event' or 'dense'")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValidationError(f"set_event_driven: threshold={threshold!r}; expected a density in [0, 1]")
    if min_outputs is not None and (isinstance(min_outputs, bool) or not isinstance(min_outputs, int)
                                    or min_outputs < 0):
        raise ValidationError(f"set_event_driven: min_outputs={min_outputs!r}; expected an integer >= 0")
    for m in module.modules():
        if isinstance(m, DenseProjection):
            m.event_mode = mode
            if threshold is not None:
                m.event_threshold = float(threshold)
            if min_outputs is not None:
                m.event_min_outputs = min_outputs


class OneToOneProjection(ProjectionModule):
    """``I = W * x`` elementwise."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return x * w
