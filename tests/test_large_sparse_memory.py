"""Compact storage of large sparse networks (issue 10) and the event-driven sparse forward.

* The IR keeps int32 synapse indices as given, compares them by value, saves and loads them.
* Rebuilt payloads (``replace``) share the frozen arrays instead of copying them.
* Constraints that are the same for every weight resolve to broadcast views (no memory per synapse)
  and give exactly the arrays, projections and violations of the full per-weight computation
  (a reference written out here, the previous implementation).
* Building, validating and preparing a sparse graph allocates (numpy, ``tracemalloc``) little more
  than the IR's own 16 bytes per synapse; lowering it, little more than the module's buffers.
* ``SparseProjection``'s event-driven forward equals the CSR product at float64 (bit for bit here,
  since both add each row's terms in increasing ``pre`` order), for one and several rows, graded
  inputs, duplicates, empty rows, an IR order that is not CSR order, and after a weight change.
"""

from __future__ import annotations

import copy
import importlib
import tracemalloc
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim import projections
from backends.torchsim.projections import SparseProjection
from ntgraph import constraints as C
from ntgraph import io as ntio
from ntgraph._data import uniform_value
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.ir import Sparse

validate_module = importlib.import_module("ntgraph.validate")  # ntgraph.validate is also a function


def _fan_in_graph(n: int, fan_in: int, seed: int = 0, index_dtype=np.int32) -> ntg.Graph:
    rng = np.random.default_rng(seed)
    g = ntg.Graph("fan-in", seed=seed)
    g.input("x", 50)
    g.population("h", ntg.LIF(tau_mem=20e-3, v_th=1.0, reset="subtract"), n)
    post = np.repeat(np.arange(n), 5).astype(index_dtype)
    g.sparse("x", "h", post_index=post, pre_index=rng.integers(0, 50, post.size).astype(index_dtype),
             weight=rng.normal(3.0, 1.0, post.size), name="in")
    post = np.repeat(np.arange(n), fan_in).astype(index_dtype)
    pre = np.sort(rng.integers(0, n, (n, fan_in)), axis=1).ravel().astype(index_dtype)
    g.sparse("h", "h", post_index=post, pre_index=pre, weight=rng.normal(0, 1, post.size) / np.sqrt(fan_in),
             name="rec")
    g.output("y", "h")
    return g


# ---------------------------------------------------------------------------------------------- IR


def test_int32_indices_are_kept_compared_by_value_and_saved(tmp_path: Path) -> None:
    g32, g64 = _fan_in_graph(30, 4, index_dtype=np.int32), _fan_in_graph(30, 4, index_dtype=np.int64)
    assert g32["rec"].post_index.dtype == np.int32 and g32["rec"].pre_index.dtype == np.int32
    assert g64["rec"].post_index.dtype == np.int64
    assert g32 == g64  # same synapses, whatever the index dtype
    post, pre = g32["rec"].synapse_index()
    assert post.dtype == np.int64 and pre.dtype == np.int64  # coordinates stay int64 for every consumer
    assert Sparse(weight=[1.0], post_index=[0], pre_index=[0], n_post=1, n_pre=1).post_index.dtype == np.int64
    other = g32["rec"].replace(post_index=np.asarray(g32["rec"].post_index)[::-1].copy())
    assert other != g32["rec"]
    path = tmp_path / "g.ntg"
    ntio.save(g32, path)
    back = ntio.load(path)
    assert back == g32 and back["rec"].pre_index.dtype == np.int32


def test_replace_shares_the_frozen_arrays_but_copies_foreign_ones() -> None:
    g = _fan_in_graph(30, 4)
    p = g["rec"]
    q = p.replace(delay=3)
    assert q.weight is p.weight and q.post_index is p.post_index and q.pre_index is p.pre_index
    mine = np.asarray(p.weight).copy()
    r = p.replace(weight=mine)
    assert r.weight is not mine and not r.weight.flags.writeable
    mine[0] = 123.0  # the caller's array may change; the payload may not
    assert r.weight[0] == p.weight[0]
    view = np.asarray(p.weight)[::-1]  # a read-only view not made by frozen_array: copied
    assert p.replace(weight=view).weight.base is None


# ------------------------------------------------------------------------------------- constraints


def _reference_resolve(projection, pre_dale, is_self) -> dict[str, np.ndarray]:
    """The per-weight arrays as the previous implementation computed them (full arrays throughout)."""
    post, pre = projection.synapse_index()
    shape = projection.weight.shape
    sign = np.zeros(shape, dtype=np.int8)
    mask = np.ones(shape, dtype=bool)
    low, high = np.full(shape, -np.inf), np.full(shape, np.inf)
    if pre_dale is not None:
        sign = pre_dale.sign[pre].reshape(shape).astype(np.int8)
    for c in projection.constraints:
        if isinstance(c, C.SignMask):
            fixed = c.sign[post, pre].reshape(shape)
            sign = np.where(fixed != 0, fixed, sign).astype(np.int8)
        elif isinstance(c, C.ConnectivityMask):
            mask &= c.mask[post, pre].reshape(shape)
        elif isinstance(c, C.NoSelfConnections):
            mask &= (post != pre).reshape(shape)
        elif isinstance(c, C.WeightBounds):
            low, high = np.maximum(low, c.low), np.minimum(high, c.high)
    low = np.where(sign > 0, np.maximum(low, 0.0), low)
    high = np.where(sign < 0, np.minimum(high, 0.0), high)
    return {"sign": sign, "mask": mask, "low": low, "high": high}


def _reference_project(w: np.ndarray, rc: dict[str, np.ndarray]) -> np.ndarray:
    w = np.where(rc["sign"] != 0, rc["sign"] * np.abs(w), w)
    return np.where(rc["mask"], np.clip(w, rc["low"], rc["high"]), 0.0)


CASES = ["none", "bounds", "dale", "dale+bounds", "mask+sign+noself", "dense-none"]


def _case(name: str):
    rng = np.random.default_rng(5)
    n_post, n_pre = 7, 7
    dale = C.DalesLaw(np.where(rng.random(n_pre) < 0.6, 1, -1)) if "dale" in name else None
    cons: list = []
    if "bounds" in name:
        cons.append(C.WeightBounds(-0.5, 0.7))
    if "mask" in name:
        cons += [C.ConnectivityMask(rng.random((n_post, n_pre)) < 0.7), C.SignMask(rng.integers(-1, 2, (n_post, n_pre))),
                 C.NoSelfConnections()]
    if name.startswith("dense"):
        return ntg.ir.Dense(weight=rng.normal(0, 1, (n_post, n_pre)), constraints=tuple(cons)), dale
    post, pre = rng.integers(0, n_post, 30).astype(np.int32), rng.integers(0, n_pre, 30).astype(np.int32)
    return Sparse(weight=rng.normal(0, 1, 30), post_index=post, pre_index=pre, n_post=n_post, n_pre=n_pre,
                  constraints=tuple(cons)), dale


@pytest.mark.parametrize("name", CASES)
def test_resolved_constraints_equal_the_full_computation(name: str) -> None:
    proj, dale = _case(name)
    rc = C.resolve("p", proj, dale, True)
    ref = _reference_resolve(proj, dale, True)
    for field in ("sign", "mask", "low", "high"):
        arr = getattr(rc, field)
        assert arr.dtype == ref[field].dtype and arr.shape == ref[field].shape and not arr.flags.writeable
        np.testing.assert_array_equal(arr, ref[field])
    w = np.random.default_rng(1).normal(0, 1, proj.weight.shape)
    projected = C.project_weights(w, rc)
    np.testing.assert_array_equal(projected, _reference_project(w, ref))
    assert projected is not w and projected.flags.writeable
    assert C.find_violation(projected, rc) is None
    assert rc.trivial == (name in ("none", "dense-none"))
    if name in ("none", "dense-none"):
        assert all(uniform_value(getattr(rc, f)) is not None for f in ("sign", "mask", "low", "high"))
        assert C.find_violation(w, rc) is None
    else:
        bad = _reference_project(w, ref) + 5.0  # pushes every present weight out of bounds or sign
        assert C.find_violation(bad, rc) is not None


def test_uniform_constraints_cost_no_memory_and_survive_graph_copies() -> None:
    g = _fan_in_graph(200, 50)
    pg = prepare(g, CompileOptions(dt=1e-3))
    rc = pg.meta("rec")["constraints"]
    for field in ("sign", "mask", "low", "high"):
        arr = getattr(rc, field)
        assert arr.shape == g["rec"].weight.shape and arr.strides == (0,)
    assert copy.deepcopy(rc) is rc
    assert pg.copy().meta("rec")["constraints"] is rc
    assert not (rc.has_sign or rc.has_mask or rc.has_bounds)


def test_empty_bounds_still_raise() -> None:
    g = ntg.Graph("b")
    g.input("x", 3)
    g.population("h", ntg.LIF(tau_mem=0.02), 2)
    p = Sparse(weight=[0.1, 0.2], post_index=[0, 1], pre_index=[0, 2], n_post=2, n_pre=3,
               constraints=(C.WeightBounds(0.0, 1.0), C.WeightBounds(2.0, 3.0)))
    with pytest.raises(ntg.errors.ConstraintError, match=r"no weight satisfies sign 0 and bounds \[2, 1\] at synapse \(0,\)"):
        C.resolve("p", p, None, False)


# ------------------------------------------------------------------------------------------ memory


def _peak_numpy_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_building_and_preparing_allocate_about_the_ir(monkeypatch) -> None:
    """numpy allocations of g.sparse + validate + passes (int32 indices, no constraint): ~16 B per synapse."""
    n, fan_in = 2000, 200
    syn = n * fan_in
    rng = np.random.default_rng(0)
    post = np.repeat(np.arange(n, dtype=np.int32), fan_in)
    pre = np.sort(rng.integers(0, n, (n, fan_in)), axis=1).ravel().astype(np.int32)
    w = rng.normal(0, 0.1, syn)

    def build() -> ntg.Graph:
        g = ntg.Graph("mem")
        g.population("h", ntg.LIF(tau_mem=0.02), n)
        g.sparse("h", "h", post_index=post, pre_index=pre, weight=w, name="rec")
        g.output("y", "h")
        return g

    monkeypatch.setattr(validate_module, "_CHUNK", 1 << 14)  # keep the slice temporaries small here
    monkeypatch.setattr(projections, "_SCAN_CHUNK", 1 << 14)
    g, peak_build = _peak_numpy_bytes(build)
    assert peak_build <= 16 * syn * 1.1 + (1 << 20)  # weight float64 + two int32 index arrays, once
    _, peak_prepare = _peak_numpy_bytes(lambda: prepare(g, CompileOptions(dt=1e-3)))
    assert peak_prepare <= 0.1 * syn  # validation scans in slices; resolved constraints are views
    pg = prepare(g, CompileOptions(dt=1e-3))
    _, peak_lower = _peak_numpy_bytes(lambda: SparseProjection("rec", pg["rec"], pg.meta("rec")["constraints"]))
    # the float64 weight copy + post, pre, t_perm, t_col (int32); the IR order is CSR order: nothing sorted
    assert peak_lower <= 24 * syn * 1.1 + (1 << 20)


# ------------------------------------------------------------------------------------- event path


def _random_projection(n_post: int, n_pre: int, n_syn: int, seed: int) -> SparseProjection:
    rng = np.random.default_rng(seed)
    post = rng.integers(0, n_post - 1, n_syn)  # the last target has no synapse (empty row)
    pre = rng.integers(0, n_pre, n_syn)
    post[:5], pre[:5] = post[5], pre[5]  # duplicates of one (post, pre) pair
    payload = Sparse(weight=rng.normal(0, 1, n_syn), post_index=post, pre_index=pre, n_post=n_post, n_pre=n_pre)
    m = SparseProjection("p", payload, C.resolve("p", payload, None, False))
    assert m.synapse_order is not None and not np.array_equal(m.synapse_order, np.arange(n_syn))
    return m


def _both(m: SparseProjection, x: torch.Tensor, w: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    w = m.weight if w is None else w
    with torch.no_grad():
        m.event_mode = "csr"
        csr = m.apply(x, w)
        assert m.last_path == "csr"
        m.event_mode = "event"
        ev = m.apply(x, w)
        assert m.last_path == "event"
    return csr, ev


@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("graded", [False, True])
def test_event_forward_equals_csr(rows: int, graded: bool) -> None:
    m = _random_projection(40, 60, 500, seed=rows)
    gen = torch.Generator().manual_seed(rows)
    x = (torch.rand(rows, 60, generator=gen, dtype=torch.float64) < 0.1).double()
    if graded:
        x = x * torch.randn(rows, 60, generator=gen, dtype=torch.float64)
    csr, ev = _both(m, x)
    torch.testing.assert_close(ev, csr, rtol=0.0, atol=1e-12)
    dense = torch.zeros(40, 60, dtype=torch.float64).index_put_(
        (m.post_index.long(), m.pre_index.long()), m.weight.detach(), accumulate=True)
    torch.testing.assert_close(ev, x @ dense.t(), rtol=1e-12, atol=1e-12)
    x3 = x.reshape(rows, 1, 60)  # leading dimensions are kept
    assert _both(m, x3)[1].shape == (rows, 1, 40)


def test_event_forward_with_no_event_and_all_events() -> None:
    m = _random_projection(20, 30, 200, seed=3)
    for x in (torch.zeros(2, 30, dtype=torch.float64), torch.ones(1, 30, dtype=torch.float64)):
        csr, ev = _both(m, x)
        torch.testing.assert_close(ev, csr, rtol=0.0, atol=1e-12)


def test_auto_mode_picks_events_only_when_sparse_and_without_gradients() -> None:
    m = _random_projection(200, 300, 6000, seed=4)
    sparse_x = torch.zeros(1, 300, dtype=torch.float64)
    sparse_x[0, :3] = 1.0  # 1% of the inputs: about 1% of the synapses, below SPARSE_EVENT_FRACTION
    dense_x = torch.ones(1, 300, dtype=torch.float64)
    m.event_mode = "auto"
    with torch.no_grad():
        m.apply(sparse_x, m.weight)
        assert m.last_path == "event"
        m.apply(dense_x, m.weight)
        assert m.last_path == "csr"
        m.apply(sparse_x.expand(4, 300), m.weight)  # several rows: the stricter fraction
        assert m.last_path == "csr"
    y = m.apply(sparse_x, m.weight)  # the weight needs a gradient: the differentiable CSR product
    assert m.last_path == "csr" and y.requires_grad


def test_transposed_weight_copy_follows_weight_changes() -> None:
    m = _random_projection(30, 40, 300, seed=5)
    x = (torch.rand(1, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.2).double()
    _both(m, x)
    with torch.no_grad():
        m.weight.mul_(-2.0)  # an optimiser step: in place
    csr, ev = _both(m, x)
    torch.testing.assert_close(ev, csr, rtol=0.0, atol=1e-12)
    other = torch.randn_like(m.weight)  # not the module's weight (e.g. constrained effective weights)
    csr, ev = _both(m, x, other)
    torch.testing.assert_close(ev, csr, rtol=0.0, atol=1e-12)


def test_compiled_network_inference_equals_the_csr_path() -> None:
    """A fan-in network run in inference with the event path (auto) and with the CSR product only."""
    g = _fan_in_graph(300, 20)
    x = (torch.rand(60, 1, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.05).double()
    out = {}
    for mode in ("auto", "csr"):
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h.v"])
        for mod in model.modules():
            if isinstance(mod, SparseProjection):
                mod.event_mode = mode
        with torch.no_grad():
            res = model(x)
        out[mode] = (res["y"], res["h.v"])
        if mode == "auto":
            assert model._proj["rec"].last_path == "event"
    assert 0 < float(out["auto"][0].sum())
    torch.testing.assert_close(out["auto"][0], out["csr"][0], rtol=0.0, atol=0.0)  # identical spikes
    torch.testing.assert_close(out["auto"][1], out["csr"][1], rtol=0.0, atol=1e-12)
    back = model.to_graph() if hasattr(model, "to_graph") else None
    if back is not None:
        assert back == g
