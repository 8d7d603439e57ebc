"""Sparse (CSR) projections and event-driven input projections against the dense reference arithmetic.

References: the same network with a masked Dense projection (sparse vs dense),
a hand-written ``index_add`` sum (duplicate synapses), ``torch.autograd.gradcheck``
and the plain dense ``F.linear`` path (event vs dense).  All at float64; spikes
must be identical and gradients equal within 1e-6 (relative to their scale).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim import projections
from backends.torchsim.projections import (EVENT_DENSITY_THRESHOLD, EVENT_MIN_OUTPUTS, EVENT_MIN_ROWS,
                                           DenseProjection, EventMatmul, SparseMatmul, SparseProjection,
                                           event_linear, set_event_driven)
from ntgraph.errors import ValidationError

TOL = 1e-6


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    a, b = a.detach(), b.detach()
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= tol * scale


def _synapses(n_post: int, n_pre: int, p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_post, n_pre)) < p
    post, pre = np.nonzero(mask)
    perm = rng.permutation(len(post))  # IR order deliberately not CSR order
    return post[perm], pre[perm]


def _pair(seed: int = 0):
    """The same network twice: Sparse projections, and masked Dense ones with the same weights."""
    rng = np.random.default_rng(seed)
    n_in, n_h, n_o = 12, 16, 4
    specs = {"in": (n_h, n_in, 0.3, 3.0), "rec": (n_h, n_h, 0.2, 0.8), "out": (n_o, n_h, 0.5, 1.0)}
    graphs = {}
    for kind in ("sparse", "dense"):
        g = ntg.Graph(kind, seed=0)
        g.input("x", n_in)
        g.population("h", ntg.LIF(tau_mem=np.linspace(5e-3, 15e-3, n_h), v_th=0.5), n_h)
        g.population("o", ntg.LI(tau_mem=10e-3), n_o)
        for name, (src, dst) in {"in": ("x", "h"), "rec": ("h", "h"), "out": ("h", "o")}.items():
            n_post, n_pre, p, scale = specs[name]
            post, pre = _synapses(n_post, n_pre, p, seed + len(name))
            w = np.random.default_rng(seed + 7 * len(name)).normal(0, scale / np.sqrt(p * n_pre), len(post))
            if kind == "sparse":
                g.sparse(src, dst, post_index=post, pre_index=pre, weight=w, name=name)
            else:
                dense = np.zeros((n_post, n_pre))
                dense[post, pre] = w
                mask = np.zeros((n_post, n_pre), bool)
                mask[post, pre] = True
                g.dense(src, dst, weight=dense, mask=mask, name=name)
        g.output("y", "o")
        g.output("s", "h")
        graphs[kind] = g
    x = torch.tensor((rng.random((25, 3, n_in)) < 0.3) * 1.0)
    return graphs, x, specs


def _run(model, x):
    model.zero_grad(set_to_none=True)
    res = model(x)
    (res["y"] ** 2).sum().backward()
    return res


@pytest.mark.parametrize("fast", [True, False])
def test_sparse_equals_masked_dense(fast):
    graphs, x, _ = _pair()
    ms = ntg.compile(graphs["sparse"], "torch", dt=1e-3, dtype=torch.float64)
    md = ntg.compile(graphs["dense"], "torch", dt=1e-3, dtype=torch.float64)
    ms.fast = md.fast = fast
    rs, rd = _run(ms, x), _run(md, x)
    assert float(rs["s"].detach().sum()) > 0  # the network spikes, so the comparison means something
    assert torch.equal(rs["s"], rd["s"])
    assert _close(rs["y"], rd["y"], 1e-12)
    for name in ("in", "rec", "out"):
        sp = ms._proj[name]
        assert isinstance(sp, SparseProjection)
        dense_grad = md._proj[name].weight.grad
        # gradients exist only for stored synapses, and equal the dense gradient there
        assert sp.weight.grad.shape == (len(sp.pre_index),)
        expected = dense_grad[sp.post_index, sp.pre_index]
        assert _close(sp.weight.grad, expected)


def test_sparse_to_payload_keeps_ir_order():
    graphs, _, _ = _pair()
    g = graphs["sparse"]
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    back = m.to_graph()
    for name in ("in", "rec", "out"):
        np.testing.assert_array_equal(np.asarray(back[name].post_index), np.asarray(g[name].post_index))
        np.testing.assert_array_equal(np.asarray(back[name].pre_index), np.asarray(g[name].pre_index))
        np.testing.assert_allclose(np.asarray(back[name].weight), np.asarray(g[name].weight), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dense_duplicates", [False, True])
def test_sparse_duplicates_and_empty_rows_match_index_add(dense_duplicates):
    post = np.array([3, 0, 3, 3, 1, 0])  # (3, 2) appears twice: duplicates add up; row 2 is empty
    pre = np.array([2, 1, 2, 0, 4, 1])
    w = np.array([0.5, -1.0, 0.25, 2.0, 1.5, 0.75])
    if dense_duplicates:  # many repeats of few pairs (a case torch.sparse.sampled_addmm rejects)
        post, pre = np.repeat(post, 4), np.repeat(pre, 4)
        w = np.linspace(-1.0, 1.0, post.size)
    g = ntg.Graph("dup", seed=0)
    g.input("x", 5)
    g.population("h", ntg.LI(tau_mem=10e-3), 4)
    g.sparse("x", "h", post_index=post, pre_index=pre, weight=w, name="p")
    g.output("y", "h")
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    proj = m._proj["p"]
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    ref = torch.zeros(7, 4, dtype=torch.float64).index_add(-1, torch.tensor(post), x.index_select(-1, torch.tensor(pre)) * wt)
    out = proj.apply(x, proj.effective_weight())
    assert _close(out, ref, 1e-14)
    gy = torch.randn(7, 4, dtype=torch.float64)
    gx_ref, gw_ref = torch.autograd.grad(ref, (x, wt), gy)
    gx, gw = torch.autograd.grad(out, (x, proj.weight), gy)
    assert _close(gx, gx_ref, 1e-14)
    gw_ir = torch.empty_like(gw)
    gw_ir[torch.as_tensor(proj.synapse_order)] = gw
    assert _close(gw_ir, gw_ref, 1e-14)


def test_sparse_matmul_gradcheck():
    post, pre = _synapses(6, 5, 0.4, 3)
    order = np.lexsort((pre, post))
    post, pre = post[order], pre[order]
    crow = torch.tensor(np.concatenate([[0], np.cumsum(np.bincount(post, minlength=6))]))
    t_perm = np.argsort(pre, kind="stable")
    t_crow = torch.tensor(np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=5))]))
    values = torch.randn(len(post), dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    args = (torch.tensor(pre), t_crow, torch.tensor(post[t_perm]), torch.tensor(t_perm), 6)
    assert torch.autograd.gradcheck(lambda v, xx: SparseMatmul.apply(v, xx, crow, *args), (values, x))


def test_event_matmul_gradcheck_and_values():
    torch.manual_seed(0)
    x = ((torch.rand(9, 7, dtype=torch.float64) < 0.3) * torch.randn(9, 7, dtype=torch.float64)).requires_grad_(True)
    w = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(EventMatmul.apply, (x, w))
    zero = torch.zeros(5, 7, dtype=torch.float64)
    assert torch.equal(event_linear(zero, w.detach()), torch.zeros(5, 4, dtype=torch.float64))


def _shd_like(recurrent: bool, bias: bool):
    g = ntg.Graph("ev", seed=3)
    g.input("x", 60)
    g.population("h", ntg.LIF(tau_mem=10e-3, v_th=0.5), 24)
    g.dense("x", "h", scale=4.0, bias=np.full(24, 0.05) if bias else None, name="in")
    if recurrent:
        g.dense("h", "h", scale=0.5, no_self=True, name="rec")
    g.population("o", ntg.LI(tau_mem=10e-3), 5)
    g.dense("h", "o", scale=1.0, name="out")
    g.output("y", "o")
    g.output("s", "h")
    return g


@pytest.mark.parametrize("recurrent,bias,fast", [(False, False, True), (True, True, True), (True, False, False)])
def test_event_driven_equals_dense(recurrent, bias, fast):
    g = _shd_like(recurrent, bias)
    steps, batch = 64, 20  # T*batch = 1280 >= EVENT_MIN_ROWS, so "auto" measures the density
    assert steps * batch >= EVENT_MIN_ROWS
    x = torch.tensor((np.random.default_rng(0).random((steps, batch, 60)) < 0.03) * 1.0)
    results = {}
    for mode in ("dense", "event", "auto"):
        m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
        m.fast = fast
        set_event_driven(m, mode, threshold=0.05, min_outputs=1)
        res = _run(m, x)
        results[mode] = (res, {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}, m)
    rd, gd, _ = results["dense"]
    assert float(rd["s"].detach().sum()) > 0
    for mode in ("event", "auto"):
        r, grads, m = results[mode]
        assert m._proj["in"].last_path == "event"
        assert torch.equal(r["s"], rd["s"])
        assert _close(r["y"], rd["y"], 1e-12)
        assert grads.keys() == gd.keys()
        for k in gd:
            assert _close(grads[k], gd[k]), k
    assert results["dense"][2]._proj["in"].last_path == "dense"


def test_auto_mode_follows_measured_density():
    g = _shd_like(False, False)
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    set_event_driven(m, "auto", threshold=0.05, min_outputs=1)
    proj: DenseProjection = m._proj["in"]
    rng = np.random.default_rng(1)
    m(torch.tensor((rng.random((64, 20, 60)) < 0.02) * 1.0))
    assert proj.last_path == "event" and proj.last_density <= 0.05
    m(torch.tensor((rng.random((64, 20, 60)) < 0.5) * 1.0))
    assert proj.last_path == "dense" and proj.last_density > 0.05
    set_event_driven(m, "auto", min_outputs=proj.weight.shape[0] + 1)  # too few outputs: dense at any density
    m(torch.tensor((rng.random((64, 20, 60)) < 0.02) * 1.0))
    assert proj.last_path == "dense"


class _PassCounter:
    """Counts event extractions (``row_events``) and ``torch.count_nonzero`` calls on inputs of ``n_pre`` columns."""

    def __init__(self, monkeypatch, n_pre: int) -> None:
        self.nonzero = self.count = 0
        nonzero, count_nonzero = projections.row_events, torch.count_nonzero

        def counting_nonzero(t, *args, **kwargs):
            self.nonzero += t.shape[-1:] == (n_pre,)
            return nonzero(t, *args, **kwargs)

        def counting_count(t, *args, **kwargs):
            self.count += t.shape[-1:] == (n_pre,)
            return count_nonzero(t, *args, **kwargs)

        monkeypatch.setattr(projections, "row_events", counting_nonzero)
        monkeypatch.setattr(torch, "count_nonzero", counting_count)

    def take(self) -> tuple[int, int]:
        """(nonzero calls, count_nonzero calls) since the last take."""
        out = (self.nonzero, self.count)
        self.nonzero = self.count = 0
        return out


def test_auto_event_path_extracts_the_events_once(monkeypatch):
    """The density check and the event extraction share one ``nonzero`` pass; results equal the dense path."""
    g = _shd_like(False, False)
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    ref = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    set_event_driven(m, "auto", threshold=0.05, min_outputs=1)
    set_event_driven(ref, "dense")
    proj: DenseProjection = m._proj["in"]
    rng = np.random.default_rng(4)
    sparse, dense = ((torch.tensor((rng.random((64, 20, 60)) < p) * 1.0) for p in (0.02, 0.5)))
    passes = _PassCounter(monkeypatch, 60)
    for x, path, expected in ((sparse, "event", (1, 0)), (dense, "dense", (1, 0)),  # events tried, discarded
                              (dense, "dense", (0, 1)),  # after a dense input: count only
                              (sparse, "event", (1, 1)), (sparse, "event", (1, 0))):
        passes.take()
        r = _run(m, x)
        assert proj.last_path == path and passes.take() == expected, (path, expected)
        rd = _run(ref, x)
        assert torch.equal(r["s"], rd["s"]) and _close(r["y"], rd["y"], 1e-12)
        assert _close(proj.weight.grad, ref._proj["in"].weight.grad)


def test_auto_narrow_projection_goes_dense_without_measuring_density(monkeypatch):
    """Fewer outputs than ``event_min_outputs``: dense, and ``x`` is never scanned for its density."""
    g = _shd_like(False, False)
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    proj: DenseProjection = m._proj["in"]
    set_event_driven(m, "auto", threshold=0.05, min_outputs=proj.weight.shape[0] + 1)
    passes = _PassCounter(monkeypatch, 60)
    m(torch.tensor((np.random.default_rng(5).random((64, 20, 60)) < 0.02) * 1.0))
    assert proj.last_path == "dense" and proj.last_density is None and passes.take() == (0, 0)


def test_auto_defaults_take_the_event_path_only_for_wide_projections():
    """The calibrated defaults: sparse input into >= EVENT_MIN_OUTPUTS neurons is event-driven, into fewer dense."""
    x = torch.tensor((np.random.default_rng(2).random((64, 20, 30)) < 0.03) * 1.0)
    paths = {}
    for n in (EVENT_MIN_OUTPUTS - 1, EVENT_MIN_OUTPUTS):
        g = ntg.Graph("wide", seed=0)
        g.input("x", 30)
        g.population("h", ntg.LIF(tau_mem=10e-3), n)
        g.dense("x", "h")
        g.output("s", "h")
        m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
        m(x)
        paths[n] = m._proj[next(iter(m._proj))].last_path
    assert 0 < EVENT_DENSITY_THRESHOLD and paths == {EVENT_MIN_OUTPUTS - 1: "dense", EVENT_MIN_OUTPUTS: "event"}


def test_set_event_driven_rejects_bad_values():
    m = ntg.compile(_shd_like(False, False), "torch", dt=1e-3)
    with pytest.raises(ValidationError, match="mode='sometimes'"):
        set_event_driven(m, "sometimes")
    with pytest.raises(ValidationError, match="min_outputs=-1"):
        set_event_driven(m, "auto", min_outputs=-1)
    with pytest.raises(ValidationError, match="threshold=2"):
        set_event_driven(m, "auto", threshold=2)
