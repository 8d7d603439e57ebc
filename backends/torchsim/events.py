"""Events of spike tensors and the sums that read only them.

Spike tensors are binary and mostly zero (1-10% of entries on a typical
hidden layer), so a product ``x @ W^T`` needs only the rows of ``W^T`` of the
active inputs.  This module holds the pieces the event-driven paths share:

* :func:`flat_events`: the nonzero entries of a tensor as flat, row-major
  indices.  On the CPU it goes through a ``bool`` mask and NumPy's
  ``flatnonzero`` (no copy: ``Tensor.numpy`` shares the memory), measured here
  2-3x faster than ``torch.nonzero`` on a float tensor (``[6400, 700]`` at 3%:
  ~3.4 ms against 6.5-8.8 ms; ``[64, 512]`` at 4%: ~40 against 75-140 us).
* :func:`bag_offsets` and :func:`bag_sum`: ``out[b] = sum_{k in bag b} w_k * table[index_k]``
  through ``F.embedding_bag`` (``O(|E| n_out)`` work instead of ``O(M n_in n_out)``).
* :class:`RowEvents` and :func:`row_events`: the events of a matrix row by
  row (CSR), extracted in one compiled pass on the CPU
  (:func:`.kernels.row_events`), with the event-driven product and weight
  gradient (a counting sort by column); the input drive's event path.
* :func:`attach_events` / :func:`attached_events`: the spike list a compiled
  scan builds while it runs, attached to its output so that the projections
  reading the spikes need no extraction.
* :class:`StepEvents`: the per-step event-driven recurrent product of the LIF
  and ALIF scans' PyTorch loops (the compiled scans list their spikes instead),
  ``z_{t-d} W'^T``, with the rule that decides per step between it and the
  dense GEMM, and the events it extracted kept for the weight gradient
  (:func:`event_weight_grad`).

All of it is exact in the sense that the same products are summed (results
differ from the dense GEMM only by the order of the additions, i.e. rounding).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import kernels

__all__ = ["flat_events", "split_flat", "bag_offsets", "bag_sum", "RowEvents", "compiled_extraction", "row_events", "attach_events",
           "attached_events", "StepEvents", "event_weight_grad", "EVENT_MIN_STEP_MACS"]

#: The per-step recurrent product takes the event path only when its dense GEMM has at least this many
#: multiply-adds (``B * n_pre * n_post``).  Measured here (2026-11-23, 2 threads, 3.5% density), one step of
#: ``[64, 512] x [512, 512]`` took ~155 us by events against ~290 us dense; ``[32, 256] x [256, 256]`` 57-95 us
#: against 56-58 us and ``[64, 128] x [128, 128]`` 60-76 us against 22-36 us: the extraction and bookkeeping
#: (~60 us) are repaid only by large steps.
EVENT_MIN_STEP_MACS = 1 << 23


def flat_events(x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Flat row-major indices (int64, ``[|E|]``) of the nonzero entries of ``x``.

    ``mask``: a ``bool`` buffer of ``x``'s shape to write ``x != 0`` into
    (saves an allocation in a loop).  CPU tensors go through NumPy's
    ``flatnonzero`` on the mask (a zero-copy view); other devices use
    ``torch.nonzero``.  ``NaN`` counts as nonzero, as in ``torch.nonzero``.
    """
    x = x.detach()
    if x.device.type != "cpu":
        return torch.nonzero(x.reshape(-1)).reshape(-1)
    if mask is None:
        mask = x != 0
    else:
        torch.ne(x, 0, out=mask)
    return torch.from_numpy(np.flatnonzero(mask.numpy()))


def split_flat(flat: Tensor, n_cols: int) -> tuple[Tensor, Tensor]:
    """``(rows, cols)`` of flat row-major indices into a matrix of ``n_cols`` columns."""
    if flat.device.type == "cpu":
        rows, cols = np.divmod(flat.numpy(), n_cols)
        return torch.from_numpy(rows), torch.from_numpy(cols)
    rows = torch.div(flat, n_cols, rounding_mode="floor")
    return rows, flat - rows * n_cols


def bag_offsets(keys: Tensor, n: int) -> Tensor:
    """Start of each of ``n`` bags in a list sorted by ``keys`` (``keys`` in ``[0, n)``; for ``F.embedding_bag``)."""
    if keys.device.type == "cpu":
        return torch.from_numpy(np.searchsorted(keys.numpy(), np.arange(n)))
    return torch.searchsorted(keys, torch.arange(n, device=keys.device))


def bag_sum(index: Tensor, table: Tensor, offsets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """``out[b] = sum_{k in bag b} weights[k] * table[index[k]]`` (``weights`` None: all ones), ``[len(offsets), d]``."""
    if index.numel() == 0:
        return table.new_zeros(offsets.numel(), table.shape[1])
    if weights is not None:
        weights = weights.to(table.dtype)
    return F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=weights)


@dataclass(frozen=True)
class RowEvents:
    """The nonzero entries ("events") of a matrix ``x`` ``[M, K]``, row by row (CSR).

    Row ``m``'s events are the columns ``cols[ptr[m]:ptr[m+1]]`` (ascending)
    with values ``vals`` over the same range, or all exactly 1 when ``vals``
    is None (spikes).  Indices are int64 (``F.embedding_bag``'s).
    """

    ptr: Tensor
    cols: Tensor
    vals: Optional[Tensor]
    width: int

    @property
    def count(self) -> int:
        """``|E|``."""
        return int(self.cols.shape[0])

    def head(self, rows: int) -> "RowEvents":
        """The events of the first ``rows`` rows (views, no copy)."""
        end = int(self.ptr[rows])
        return RowEvents(self.ptr[:rows + 1], self.cols[:end], None if self.vals is None else self.vals[:end],
                         self.width)

    def product(self, table: Tensor) -> Tensor:
        """``x @ table`` (``table`` ``[K, n_out]``, contiguous): one embedding-bag sum per row, ``[M, n_out]``."""
        return bag_sum(self.cols, table, self.ptr[:-1], self.vals)

    def weight_grad(self, grad_out: Tensor) -> Tensor:
        """``grad_out^T @ x`` (``grad_out`` ``[M, n_out]``), ``[n_out, K]``: per column of ``x``, the sum of the
        ``grad_out`` rows of its events (times their values).

        On the CPU with the compiled kernels the events are ordered by column
        with a counting sort (:func:`.kernels.by_column`; with the sums, 1.8 ms
        against 4.2 ms for :func:`event_weight_grad` on the events above and a
        ``[6400, 128]`` gradient); otherwise through :func:`event_weight_grad`.
        """
        if self.cols.device.type == "cpu" and kernels.enabled():
            col_ptr, rows, vals = kernels.by_column(self.ptr, self.cols, self.vals, self.width)
            return bag_sum(rows, grad_out.contiguous(), col_ptr[:-1], vals).t()
        counts = self.ptr[1:] - self.ptr[:-1]
        rows = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
        return event_weight_grad(grad_out, rows, self.cols, self.width, self.vals)


def compiled_extraction(x: Tensor) -> bool:
    """Whether :func:`row_events` extracts the events of ``x`` with the compiled kernel (which needs no mask)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and kernels.enabled()


def row_events(x: Tensor, mask: Optional[Tensor] = None) -> RowEvents:
    """The events of ``x`` ``[..., K]`` (as a matrix ``[M, K]``), for :class:`RowEvents`' sums.

    On the CPU with the compiled kernels (:func:`.kernels.row_events`): one
    pass, per row a vectorized comparison into byte flags and the flagged
    columns listed through 64-bit masks; measured here (2026-11-23, float32
    ``[6400, 700]`` at 3%, 2 threads) 2.3 ms against 9.2 ms for
    :func:`flat_events` (``x != 0`` into ``mask``, NumPy's ``flatnonzero``), the
    gather of the values to check whether they are all 1 and the row offsets.
    Otherwise (other devices or dtypes, kernels off) it goes through
    :func:`flat_events`, into ``mask`` if given.  ``NaN`` counts as an event, ``-0.0`` does not.
    """
    x2d = x.detach().reshape(-1, x.shape[-1]) if x.ndim != 2 else x.detach()
    width = x2d.shape[1]
    if compiled_extraction(x2d):
        ptr, cols, vals = kernels.row_events(x2d)
        return RowEvents(ptr, cols, vals, width)
    flat = flat_events(x2d, mask.view(x2d.shape) if mask is not None else None)
    rows, cols = split_flat(flat, width)
    vals: Optional[Tensor] = torch.index_select(x2d.reshape(-1), 0, flat)
    if bool((vals == 1).all()):
        vals = None
    counts = torch.bincount(rows, minlength=x2d.shape[0]) if rows.numel() else rows.new_zeros(x2d.shape[0])
    ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return RowEvents(ptr, cols, vals, width)


_ATTACHED: dict[int, tuple["weakref.ref[Tensor]", int, RowEvents]] = {}


def attach_events(x: Tensor, events: RowEvents) -> None:
    """Remember that ``events`` are the events of ``x`` (as ``[M, K]``), for :func:`attached_events`.

    A scan that lists its spikes while computing them (the compiled LIF
    forward) attaches the list to its output, so a projection reading the
    spikes sums from it without an extraction pass.  The entry lives as long
    as ``x`` and is ignored once ``x`` is modified in place (its version
    counter moves).
    """
    key = id(x)
    _ATTACHED[key] = (weakref.ref(x, lambda _ref, key=key: _ATTACHED.pop(key, None)), x._version, events)


def attached_events(x: Tensor) -> Optional[RowEvents]:
    """The events attached to ``x`` by :func:`attach_events`, if ``x`` is that tensor, unmodified; else None."""
    entry = _ATTACHED.get(id(x))
    if entry is None:
        return None
    ref, version, events = entry
    if ref() is not x or x._version != version:
        return None
    return events


class StepEvents:
    """The per-step recurrent product ``z_{t-d} @ W^T`` of a scan from the events of ``z``, when it pays.

    A scan calls :meth:`record` with each step's spikes right after computing
    them (it extracts their events: ``extract`` must be true), and
    :meth:`product` at the step that reads them; :meth:`product` sums the rows
    of ``W^T`` of the active neurons (one embedding-bag sum) when their density
    is at most ``threshold``, and returns ``None`` (the caller runs the dense
    GEMM) otherwise.  The events of all recorded steps stay available for the
    weight gradient (:meth:`all_events`).

    Whether a scan uses this at all is :meth:`wanted`: CPU tensors (the
    extraction goes through NumPy), float32/float64, a step GEMM of at least
    :data:`EVENT_MIN_STEP_MACS` multiply-adds, and ``mode`` ``"auto"`` (or
    ``"event"``, which skips the size rule and the density check).
    """

    def __init__(self, steps: int, batch: int, n_pre: int, threshold: float, force: bool = False) -> None:
        self.batch, self.n_pre, self.threshold, self.force = batch, n_pre, threshold, force
        self.flat: list[Optional[Tensor]] = [None] * steps
        self._mask = torch.empty(batch, n_pre, dtype=torch.bool)
        self._bag_starts = np.arange(batch)

    @staticmethod
    def wanted(mode: str, spikes: Tensor, weight: Tensor, batch: int) -> bool:
        """Whether a scan with this event ``mode`` (``"auto"``, ``"event"`` or ``"dense"``) should record events."""
        if mode == "dense" or spikes.device.type != "cpu" or spikes.dtype not in (torch.float32, torch.float64):
            return False
        return mode == "event" or batch * weight.shape[0] * weight.shape[1] >= EVENT_MIN_STEP_MACS

    def record(self, t: int, z: Tensor) -> None:
        """Extract the events of step ``t``'s spikes ``z`` ``[B, n_pre]`` (binary, 0.0 or 1.0)."""
        self.flat[t] = flat_events(z, self._mask)

    def product(self, t: int, table: Tensor) -> Optional[Tensor]:
        """``z_t @ table`` (``table = W^T``, ``[n_pre, n_post]``, contiguous) from the events of step ``t``, or None.

        None when step ``t`` was not recorded or its density is above the threshold (then the dense GEMM is
        cheaper and the caller runs it).
        """
        flat = self.flat[t]
        if flat is None:
            return None
        if not self.force and flat.numel() > self.threshold * self.batch * self.n_pre:
            return None
        rows, cols = np.divmod(flat.numpy(), self.n_pre)  # CPU only (see wanted): a few us on NumPy
        offsets = torch.from_numpy(np.searchsorted(rows, self._bag_starts))
        return bag_sum(torch.from_numpy(cols), table, offsets)

    def all_events(self, first: int, last: int) -> Optional[tuple[Tensor, Tensor]]:
        """Events of steps ``first .. last - 1`` as ``(row, col)`` into the ``[(last-first)*B, n_pre]`` spikes.

        None when one of those steps was not recorded.
        """
        parts = self.flat[first:last]
        if any(p is None for p in parts):
            return None
        size = self.batch * self.n_pre
        flat = torch.cat([p + k * size for k, p in enumerate(parts)]) if parts else torch.zeros(0, dtype=torch.long)
        return split_flat(flat, self.n_pre)

    def density(self, first: int, last: int) -> float:
        """Fraction of nonzero entries over the recorded steps ``first .. last - 1`` (1.0 if any is missing)."""
        parts = self.flat[first:last]
        if not parts or any(p is None for p in parts):
            return 1.0
        return sum(p.numel() for p in parts) / (len(parts) * self.batch * self.n_pre)


def event_weight_grad(grad_out: Tensor, rows: Tensor, cols: Tensor, n_pre: int,
                      values: Optional[Tensor] = None) -> Tensor:
    """``dL/dW = grad_out^T @ x`` (``[n_post, n_pre]``) from the events ``(rows, cols[, values])`` of ``x``.

    ``grad_out`` ``[M, n_post]``; ``x`` ``[M, n_pre]`` is given by its nonzero
    entries only.  Column ``i`` of the result (``dL/dW[:, i]``) is the sum of the
    ``grad_out`` rows of the events in column ``i`` of ``x`` (times their
    values): the events are ordered by column (a stable sort: on the CPU NumPy's
    radix sort on 16-bit keys when ``n_pre < 2**15``, measured 1.6x faster than
    ``torch.sort`` on 134k events) and summed as one embedding bag per column.
    ``O(|E| n_post)`` work.
    """
    if cols.device.type == "cpu":
        keys = cols.numpy()
        order = torch.from_numpy(np.argsort(keys.astype(np.int16) if n_pre < 2 ** 15 else keys, kind="stable"))
        offsets = np.zeros(n_pre, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=n_pre)[:-1], out=offsets[1:])
        offsets_t = torch.from_numpy(offsets)
    else:
        sorted_cols, order = torch.sort(cols, stable=True)
        offsets_t = bag_offsets(sorted_cols, n_pre)
    weights = torch.index_select(values, 0, order) if values is not None else None
    return bag_sum(torch.index_select(rows, 0, order), grad_out.contiguous(), offsets_t, weights).t()
