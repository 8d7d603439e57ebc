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
  all-steps-at-once input drive, not the per-step recurrent matmul) and the
  projection has at least :data:`EVENT_MIN_OUTPUTS` (256) outputs (narrower
  projections go dense without looking at ``x``), and uses the event path at or
  below :data:`EVENT_DENSITY_THRESHOLD` (0.05) (both calibrated here, see there);
  :func:`set_event_driven` sets them or forces either path.  The density check
  and the event extraction share one pass: the events (``nonzero``) are
  extracted once, the density is their count over ``x.numel()``, and the event
  path reuses them.  Only right after a dense input (last measured density above
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

__all__ = ["ProjectionModule", "DenseProjection", "SparseProjection", "OneToOneProjection", "SparseMatmul",
           "EventMatmul", "event_linear", "set_event_driven", "EVENT_DENSITY_THRESHOLD", "EVENT_MIN_ROWS",
           "EVENT_MIN_OUTPUTS"]

#: Input density (fraction of nonzero entries) at or below which ``mode="auto"`` takes the event-driven path
#: (for projections with at least :data:`EVENT_MIN_OUTPUTS` outputs); 0 turns the density check off.
#: Calibrated on the 2-core development machine (2026-11-23, quiet: load ~1.2) with
#: ``benchmarks/event_threshold.py`` and whole SHD-shaped training/inference steps (docs/performance.md,
#: "Event-driven input projections"): at 3% input density the event path made the whole step 1.2-1.4x faster
#: at H=256 and 512 and 0.85-0.94x as fast at H=128; in isolation (6400 x 700 inputs) it won up to a
#: density of 0.05-0.1.  Recalibrate on another machine and set it with :func:`set_event_driven`.
EVENT_DENSITY_THRESHOLD = 0.05
#: ``mode="auto"`` takes the event path only for projections with at least this many outputs (``n_post``):
#: the index extraction over ``x`` costs the same for any ``n_post`` and is not repaid by small outputs.
EVENT_MIN_OUTPUTS = 256
#: The event path is considered only for inputs of at least this many rows (``T*batch``): the density
#: check and the index bookkeeping cost more than they save on one step's ``[batch, n]``.
EVENT_MIN_ROWS = 1024


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
        self.has_sign = bool(np.any(constraints.sign))
        self.has_mask = not bool(np.all(constraints.mask))
        self.has_bounds = bool(np.any(np.isfinite(constraints.low)) or np.any(np.isfinite(constraints.high)))
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


def _events(x2d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nonzero entries of ``x2d`` in row-major order: (rows, cols, values)."""
    rows, cols = x2d.nonzero(as_tuple=True)
    return rows, cols, x2d[rows, cols]


def _offsets(keys: Tensor, n: int) -> Tensor:
    """Start of each of ``n`` bags in a list sorted by ``keys`` (for :func:`F.embedding_bag`)."""
    offsets = torch.zeros(n, dtype=torch.long, device=keys.device)
    if n > 1:
        offsets[1:] = torch.bincount(keys, minlength=n)[:-1].cumsum(0)
    return offsets


def _bag_sum(index: Tensor, table: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
    """``out[b] = sum_{k in bag b} weights[k] * table[index[k]]`` (an embedding-bag sum)."""
    if index.numel() == 0:
        return table.new_zeros(offsets.numel(), table.shape[1])
    return F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=weights.to(table.dtype))


class EventMatmul(torch.autograd.Function):
    """``y = x @ W^T`` computed from the nonzero entries ("events") of ``x`` only.

    With ``E`` the set of nonzero ``(m, i)`` of ``x`` (``[M, n_pre]``)::

        y[m, :]      = sum_{(m, i) in E} x[m, i] * W[:, i]          (forward)
        dL/dW[:, i]  = sum_{(m, i) in E} x[m, i] * dL/dy[m, :]       (weight gradient)
        dL/dx        = dL/dy @ W                                     (dense; only if x needs it)

    Both sums are embedding-bag sums over ``|E|`` rows of length ``n_post``:
    ``O(|E| n_post)`` work instead of ``O(M n_pre n_post)``.  The backward
    keeps ``x`` (or nothing more than its events) and ``W``.
    """

    @staticmethod
    def forward(ctx: Any, x2d: Tensor, w: Tensor,  # type: ignore[override]
                events: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """``events``: ``x2d.nonzero(as_tuple=True)`` if already computed (saves a second pass over ``x2d``)."""
        if events is None:
            rows, cols, vals = _events(x2d)
        else:
            rows, cols = events
            vals = x2d[rows, cols]
        y = _bag_sum(cols, w.t().contiguous(), _offsets(rows, x2d.shape[0]), vals)
        ctx.save_for_backward(rows, cols, vals, w)
        ctx.n_pre = x2d.shape[1]
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor):  # type: ignore[override]
        rows, cols, vals, w = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ w
        if ctx.needs_input_grad[1]:
            order = torch.sort(cols, stable=True).indices
            grad_w = _bag_sum(rows[order], grad_y.contiguous(), _offsets(cols[order], ctx.n_pre), vals[order]).t()
        return grad_x, grad_w, None


def event_linear(x: Tensor, w: Tensor, bias: Optional[Tensor] = None,
                 events: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
    """``F.linear(x, w, bias)`` through :class:`EventMatmul` (``x [..., n_pre] -> [..., n_post]``).

    ``events``: the nonzero ``(rows, cols)`` of ``x.reshape(-1, n_pre)`` if already known.
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

    def use_events(self, x: Tensor) -> bool:
        """Whether ``x`` goes through the event-driven path (measures its density in ``auto`` mode)."""
        return self._route(x)[0]

    def _route(self, x: Tensor) -> tuple[bool, Optional[tuple[Tensor, Tensor]]]:
        """(event path?, the events of ``x.reshape(-1, n_pre)`` if the density check extracted them).

        In ``auto`` mode the density ``rho = |E| / x.numel()`` (``E``: nonzero entries) is measured only
        for inputs of at least :data:`EVENT_MIN_ROWS` rows into at least ``event_min_outputs`` outputs; it
        is taken from the extracted events themselves (one pass over ``x``), unless the last measured
        density was above the threshold, in which case ``count_nonzero`` decides first.
        """
        if self.event_mode == "dense" or x.dtype not in (torch.float32, torch.float64):
            return False, None
        rows = x.numel() // max(x.shape[-1], 1)
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
        events = x.reshape(-1, x.shape[-1]).nonzero(as_tuple=True)
        density = events[0].numel() / x.numel()
        self.last_density = density
        if density > self.event_threshold:
            return False, None
        return True, (events[0], events[1])

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
                post = torch.repeat_interleave(torch.arange(n_post, device=crow.device), crow.diff())
                grad_values = (grad_y.index_select(1, post) * x2d.index_select(1, col).to(grad_y.dtype)).sum(0)
        if ctx.needs_input_grad[1]:
            if empty:
                grad_x = torch.zeros_like(x2d)
            else:
                st = _csr(t_crow, t_col, values[t_perm], (n_pre, n_post))
                grad_x = (st @ grad_y.t()).t()
        return grad_values, grad_x, None, None, None, None, None, None, None


def _crow(keys: np.ndarray, n: int) -> Tensor:
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=crow[1:])
    return torch.from_numpy(crow)


class SparseProjection(ProjectionModule):
    """``I[..., post[k]] += W[k] * x[..., pre[k]]`` over the synapse list, as a CSR sparse matmul.

    The synapses are kept sorted by ``(post, pre)`` (CSR order): ``weight``
    and the constraint buffers hold them in that order, and :meth:`to_payload`
    puts them back in the IR's order.  ``synapse_order[j]`` is the IR index of
    stored synapse ``j``.  No ``n_post x n_pre`` array is built.
    """

    def __init__(self, node_id: str, payload: Sparse, constraints: ResolvedConstraints) -> None:
        post = np.asarray(payload.post_index, dtype=np.int64)
        pre = np.asarray(payload.pre_index, dtype=np.int64)
        key = post * payload.n_pre + pre
        # CSR order (stable); graphs built row by row are already in it, and then nothing moves
        order = np.arange(key.size) if np.all(key[1:] >= key[:-1]) else np.argsort(key, kind="stable")
        sorted_payload = payload.replace(weight=np.asarray(payload.weight)[order], post_index=post[order],
                                         pre_index=pre[order])
        sorted_cons = type(constraints)(
            **{k: np.asarray(getattr(constraints, k))[order] for k in ("sign", "mask", "low", "high")})
        super().__init__(node_id, sorted_payload, sorted_cons)
        self.payload, self.constraints = payload, constraints  # the IR's order, for to_payload
        self.synapse_order = order
        post, pre = post[order], pre[order]
        self.unique_synapses = bool(np.all(key[order][1:] > key[order][:-1]))
        t_perm = np.argsort(pre, kind="stable")  # CSR order of S^T
        self.register_buffer("post_index", torch.from_numpy(post.copy()))
        self.register_buffer("pre_index", torch.from_numpy(pre.copy()))
        self.register_buffer("crow", _crow(post, self.n_post))
        self.register_buffer("t_crow", _crow(pre, self.n_pre))
        self.register_buffer("t_col", torch.from_numpy(post[t_perm].copy()))
        self.register_buffer("t_perm", torch.from_numpy(t_perm.astype(np.int64)))

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        if w.dtype not in (torch.float32, torch.float64):  # CPU CSR kernels: float32/64; gather/scatter otherwise
            out = x.new_zeros(*x.shape[:-1], self.n_post)
            return out.index_add(-1, self.post_index, x.index_select(-1, self.pre_index) * w)
        lead = x.shape[:-1]
        x2d = x.reshape(-1, x.shape[-1]).to(w.dtype)
        y = SparseMatmul.apply(w, x2d, self.crow, self.pre_index, self.t_crow, self.t_col, self.t_perm, self.n_post,
                               self.unique_synapses)
        return y.reshape(*lead, self.n_post)

    def to_payload(self) -> Projection:
        w_sorted = self.effective_weight().detach().cpu().double().numpy()
        w = np.empty_like(w_sorted)
        w[self.synapse_order] = w_sorted
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
