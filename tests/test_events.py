"""The event helpers of the torch backend (backends/torchsim/events.py) against plain torch references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.torchsim import kernels
from backends.torchsim.events import (EVENT_MIN_STEP_MACS, StepEvents, bag_offsets, bag_sum, event_weight_grad,
                                      flat_events, row_events, split_flat)


def _spikes(shape: tuple[int, ...], density: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor((np.random.default_rng(seed).random(shape) < density) * 1.0, dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 9), cols=st.integers(1, 9), density=st.floats(0.0, 1.0), seed=st.integers(0, 10 ** 6))
def test_flat_events_equal_torch_nonzero(rows, cols, density, seed):
    x = _spikes((rows, cols), density, seed) * torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed),
                                                           dtype=torch.float64)
    expected = torch.nonzero(x.reshape(-1)).reshape(-1)
    assert torch.equal(flat_events(x), expected)
    mask = torch.empty(rows, cols, dtype=torch.bool)
    assert torch.equal(flat_events(x, mask), expected)
    r, c = split_flat(expected, cols)
    assert torch.equal(torch.stack([r, c], 1), torch.nonzero(x))


def test_flat_events_special_values_follow_nonzero():
    """``-0.0`` is zero and ``NaN`` is nonzero, as for ``torch.nonzero``; non-contiguous inputs work."""
    x = torch.tensor([[0.0, -0.0, float("nan"), 1.0], [2.0, 0.0, -3.0, 0.0]])
    assert torch.equal(flat_events(x), torch.nonzero(x.reshape(-1)).reshape(-1))
    assert flat_events(x).tolist() == [2, 3, 4, 6]
    xt = x.t()  # a transposed view: indices follow the logical (row-major) order
    assert torch.equal(flat_events(xt), torch.nonzero(xt.reshape(-1)).reshape(-1))


@pytest.fixture(params=["kernels", "torch"])
def extraction(request):
    """``row_events`` through the compiled kernel and through ``flat_events`` (kernels off)."""
    if request.param == "kernels":
        if not kernels.enabled():
            pytest.skip("numba is not installed or NTGRAPH_KERNELS=0")
        yield request.param
        return
    with kernels.disabled():
        yield request.param


def _row_major(events) -> tuple[torch.Tensor, torch.Tensor]:
    counts = events.ptr[1:] - events.ptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.shape[0]), counts), events.cols


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows,cols", [(0, 5), (1, 1), (3, 7), (9, 8), (13, 17), (40, 700)])
@pytest.mark.parametrize("binary", [True, False], ids=["spikes", "values"])
def test_row_events_equal_torch_nonzero(extraction, dtype, rows, cols, binary):
    """Row-by-row events (CSR) against ``torch.nonzero``: the same entries in row-major order, values only when
    some are not exactly 1; widths below, at and across the kernel's blocks of 8."""
    x = _spikes((rows, cols), 0.08, rows * 31 + cols, dtype=dtype)
    if not binary:
        x = x * torch.randn(rows, cols, generator=torch.Generator().manual_seed(cols), dtype=dtype)
    events = row_events(x)
    r, c = _row_major(events)
    assert torch.equal(torch.stack([r, c], 1), torch.nonzero(x)) and events.count == int((x != 0).sum())
    assert events.ptr.shape == (rows + 1,) and events.cols.dtype == events.ptr.dtype == torch.int64
    if binary or events.count == 0:
        assert events.vals is None or torch.equal(events.vals, x[x != 0])
    else:
        assert events.vals is not None and torch.equal(events.vals, x[x != 0])


def test_row_events_grow_past_the_capacity_of_the_last_call(extraction):
    """The kernel sizes its buffers from the last call of the same shape; a much denser input must still come out
    whole (the pass is repeated with room for every entry)."""
    sparse, dense = _spikes((64, 50), 0.01, 1), _spikes((64, 50), 0.9, 2)
    for x in (sparse, dense, sparse, torch.ones(64, 50, dtype=torch.float64)):
        events = row_events(x)
        assert events.count == int((x != 0).sum())
        assert torch.equal(torch.stack(_row_major(events), 1), torch.nonzero(x))


def test_row_events_special_values(extraction):
    """``-0.0`` is no event (its bits are nonzero: the kernel's block test lets it through, the compare drops it),
    ``NaN`` and ``inf`` are; a 3-d input is read as ``[M, K]``."""
    x = torch.zeros(2, 3, 9)
    x[0, 0, 1] = -0.0
    x[0, 1, 8] = float("nan")
    x[1, 2, 0] = float("inf")
    x[1, 0, 4] = 1.0
    events = row_events(x)
    assert events.width == 9 and events.ptr.tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert events.cols.tolist() == [8, 4, 0]
    assert events.vals is not None and torch.isnan(events.vals[0]) and events.vals[1:].tolist() == [1.0, float("inf")]


@pytest.mark.parametrize("with_values", [False, True])
def test_row_events_products_equal_the_dense_matmuls(extraction, with_values):
    """``RowEvents.product`` and ``weight_grad`` (counting sort by column) against dense float64 matmuls."""
    x = _spikes((60, 37), 0.1, 5)
    if with_values:
        x = x * torch.rand(60, 37, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x[:, 3] = 0.0  # an empty column, and an empty row
    x[7] = 0.0
    w = torch.randn(11, 37, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    g = torch.randn(60, 11, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    events = row_events(x)
    torch.testing.assert_close(events.product(w.t().contiguous()), x @ w.t(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(events.weight_grad(g), g.t() @ x, atol=1e-12, rtol=1e-12)


def test_bag_offsets_mark_the_start_of_every_bag_including_empty_ones():
    keys = torch.tensor([0, 0, 2, 2, 2, 4])
    assert bag_offsets(keys, 6).tolist() == [0, 2, 2, 5, 5, 6]
    assert bag_offsets(torch.zeros(0, dtype=torch.long), 3).tolist() == [0, 0, 0]


@pytest.mark.parametrize("with_values", [False, True])
def test_event_sums_equal_the_dense_products(with_values):
    """Forward ``x @ W^T`` and weight gradient ``g^T @ x`` from the events, against dense float64 matmuls."""
    x = _spikes((50, 30), 0.1, 1)
    if with_values:
        x = x * torch.rand(50, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w = torch.randn(7, 30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = torch.randn(50, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    flat = flat_events(x)
    rows, cols = split_flat(flat, 30)
    values = x.reshape(-1)[flat] if with_values else None
    y = bag_sum(cols, w.t().contiguous(), bag_offsets(rows, 50), values)
    torch.testing.assert_close(y, x @ w.t(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(event_weight_grad(g, rows, cols, 30, values), g.t() @ x, atol=1e-12, rtol=1e-12)
    assert bag_sum(cols[:0], w.t().contiguous(), bag_offsets(rows[:0], 50)).abs().sum() == 0  # no events: zeros


def test_step_events_follow_the_density_threshold_and_keep_all_events():
    batch, n, steps = 6, 20, 4
    z = [_spikes((batch, n), d, 10 + t) for t, d in enumerate((0.05, 0.5, 0.0, 0.1))]
    table = torch.randn(n, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rec = StepEvents(steps, batch, n, threshold=0.2)
    assert rec.product(0, table) is None  # nothing recorded yet
    for t in range(steps):
        rec.record(t, z[t])
    for t in range(steps):
        y = rec.product(t, table)
        if float(z[t].mean()) > 0.2:
            assert y is None  # too dense: the caller runs the GEMM
        else:
            torch.testing.assert_close(y, z[t] @ table, atol=1e-12, rtol=0)
    forced = StepEvents(steps, batch, n, threshold=0.0, force=True)
    forced.record(1, z[1])
    torch.testing.assert_close(forced.product(1, table), z[1] @ table, atol=1e-12, rtol=0)
    rows, cols = rec.all_events(1, 4)
    stacked = torch.cat(z[1:4])
    assert torch.equal(torch.stack([rows, cols], 1), torch.nonzero(stacked))
    assert rec.density(0, 4) == pytest.approx(float(torch.cat(z).mean()))
    assert forced.all_events(0, 2) is None and forced.density(0, 2) == 1.0  # step 0 was not recorded


def test_step_events_are_wanted_only_for_large_cpu_steps():
    w_big = torch.zeros(512, 512)
    assert 32 * 512 * 512 >= EVENT_MIN_STEP_MACS
    spikes = torch.zeros(3, 32, 512)
    assert StepEvents.wanted("auto", spikes, w_big, 32)
    assert not StepEvents.wanted("auto", spikes, w_big, 8)  # too small a step GEMM
    assert StepEvents.wanted("event", spikes, w_big, 8)  # forced
    assert not StepEvents.wanted("dense", spikes, w_big, 32)
    assert not StepEvents.wanted("auto", spikes.to(torch.bfloat16), w_big, 32)
