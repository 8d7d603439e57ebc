"""The torch backend's bit-exact Loihi 2 mode (``backends/torchsim/loihi.py``).

Against the bit-accurate numpy model (``tests/loihi_reference.py``): identical
spikes and integer ``v``/``u`` for a batch (fast, no Lava).  Against Lava's
``fixed_pt`` models: identical spikes and integers (slow).  Quantisation-aware
training: gradients reach the float weights, and after training the module,
its written-back graph re-quantised, and Lava ``fixed_pt`` all compute the same
integers, so nothing is lost when the trained network moves to Lava (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.passes.quantize import quantize

from backends.torchsim.loihi import LoihiSimulationModule, lower_loihi

import loihi_reference

DT = 1e-3


def graph_with_everything(seed: int = 3) -> ntg.Graph:
    rng = np.random.default_rng(seed)
    g = ntg.Graph("loihi", seed=seed)
    g.input("x", 6)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=rng.uniform(0.6, 1.0, 8), v_leak=0.1,
                               v_reset=rng.uniform(-0.2, 0.0, 8)), 8)
    g.dense("x", "h", scale=1.2, bias=rng.normal(0.1, 0.1, 8))
    g.dense("h", "h", scale=0.4, delay=2)
    g.population("c", ntg.CubaLIF(tau_syn=3e-3, tau_mem=5e-3, v_th=0.25, w_in=1.5), 5)
    g.dense("h", "c", scale=0.8, bias=np.full(5, 0.05))
    g.sparse("x", "c", p=0.5, scale=0.8, delay=3)
    g.population("f", ntg.IF(r=1.0 / DT, v_th=1.0, v_reset=0.1), 5)
    g.one_to_one("c", "f", weight=rng.uniform(0.8, 1.6, 5))
    g.population("o", ntg.LI(tau_mem=3e-3, v_leak=0.05), 3)
    g.dense("f", "o")
    g.dense("h", "o")
    g.output("y", "o")
    g.output("hs", "h")
    return g


def quantized(g: ntg.Graph, **qopts) -> tuple[ntg.Graph, CompileOptions]:
    opts = CompileOptions(dt=DT, timing="pipelined")
    return quantize(prepare(g, opts), dt=DT, **qopts), opts


RECORD = ["h", "h.v", "c", "c.v", "c.i", "f", "f.v", "o.v"]
KEYS = [("h.spikes", "h", "spikes"), ("h.v", "h", "v"), ("c.spikes", "c", "spikes"), ("c.v", "c", "v"),
        ("c.i", "c", "u"), ("f.spikes", "f", "spikes"), ("f.v", "f", "v"), ("o.v", "o", "v")]


def test_bit_exact_with_the_numpy_model_for_a_batch():
    qg, opts = quantized(graph_with_everything())
    module = lower_loihi(qg, opts)
    x = (np.random.default_rng(1).random((20, 3, 6)) < 0.4).astype(float)
    with torch.no_grad():
        res = module(x, record=RECORD, raw=True)
    assert res.records["h.spikes"].sum() > 5 and res.records["f.spikes"].sum() > 0
    for b in range(3):
        ref = loihi_reference.simulate_loihi(qg, {"x": x[:, b]})
        for key, pop, var in KEYS:
            np.testing.assert_array_equal(res.records[key][:, b].numpy(), ref[pop][var], err_msg=f"{key} sample {b}")
    for proj in qg.projections:
        q = qg.meta(proj)["loihi"]
        w, e = module.integer_weights()[proj]
        assert e == q.weight_exp
        if q.post_index is None:
            np.testing.assert_array_equal(w, q.weight)
        else:
            np.testing.assert_array_equal(w[q.post_index, q.pre_index], q.weight)


def test_sparse_synapses_out_of_csr_order_are_paired_with_their_own_weights():
    """A synapse list not sorted by (post, pre): the torch backend stores it in CSR order, and the Loihi mode must
    pair every stored weight with its own coordinates (bit-exact against the numpy model, which uses the IR order)."""
    rng = np.random.default_rng(4)
    g = ntg.Graph("unsorted", seed=4)
    g.input("x", 6)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=0.5), 5)
    post, pre = np.nonzero(rng.random((5, 6)) < 0.6)
    order = rng.permutation(post.size)
    assert np.any(np.diff(post[order] * 6 + pre[order]) < 0)  # really out of CSR order
    g.sparse("x", "h", post_index=post[order], pre_index=pre[order], weight=rng.uniform(0.1, 0.9, post.size),
             delay=1)
    g.output("s", "h")
    qg, opts = quantized(g)
    module = lower_loihi(qg, opts)
    x = (np.random.default_rng(2).random((25, 2, 6)) < 0.5).astype(float)
    with torch.no_grad():
        res = module(x, record=["h", "h.v"], raw=True)
    assert res.records["h.spikes"].sum() > 5
    q = qg.meta(qg.projections[0])["loihi"]
    w, _ = module.integer_weights()[qg.projections[0]]
    np.testing.assert_array_equal(w[q.post_index, q.pre_index], q.weight)
    for b in range(2):
        ref = loihi_reference.simulate_loihi(qg, {"x": x[:, b]})
        np.testing.assert_array_equal(res.records["h.spikes"][:, b].numpy(), ref["h"]["spikes"])
        np.testing.assert_array_equal(res.records["h.v"][:, b].numpy(), ref["h"]["v"])


def test_model_units_and_gradients():
    qg, opts = quantized(graph_with_everything())
    module = lower_loihi(qg, opts)
    x = (np.random.default_rng(2).random((15, 4, 6)) < 0.4).astype(float)
    res = module(x, record=["h.v"])
    raw = module(x, record=["h.v"], raw=True)
    q = qg.meta("h")["loihi"]
    np.testing.assert_allclose(res.records["h.v"].detach().numpy(),
                               raw.records["h.v"].detach().numpy() / q.scale + q.offset, rtol=0, atol=1e-12)
    loss = res.outputs["y"].pow(2).mean() + res.outputs["hs"].mean()
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_write_back_requantizes_to_the_same_integers():
    qg, opts = quantized(graph_with_everything())
    module = lower_loihi(qg, opts)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1.1)
    back, _ = quantized(module.to_graph())
    again = lower_loihi(back, opts)
    before, after = module.integer_weights(), again.integer_weights()
    for proj in before:
        np.testing.assert_array_equal(before[proj][0], after[proj][0])
        assert before[proj][1] == after[proj][1]
    x = (np.random.default_rng(3).random((12, 2, 6)) < 0.4).astype(float)
    with torch.no_grad():
        a, b = module(x, raw=True), again(x, raw=True)
    for k in a.outputs:
        np.testing.assert_array_equal(a.outputs[k].numpy(), b.outputs[k].numpy())


def test_rejects_undelayed_projections():
    g = graph_with_everything()
    qg = quantize(prepare(g, CompileOptions(dt=DT)), dt=DT)
    with pytest.raises(ntg.ValidationError, match=r"Projection 'x->h'\.delay: the effective delay is 0"):
        LoihiSimulationModule(qg, CompileOptions(dt=DT))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    qg, opts = quantized(graph_with_everything())
    x = (np.random.default_rng(4).random((20, 8, 6)) < 0.4).astype(float)
    cpu = lower_loihi(qg, opts)
    gpu = lower_loihi(qg, opts, device="cuda")
    with torch.no_grad():
        a = cpu(x, record=RECORD, raw=True)
        b = gpu(x, record=RECORD, raw=True)
    for k in a.records:
        np.testing.assert_array_equal(a.records[k].numpy(), b.records[k].cpu().numpy(), err_msg=k)


# ----------------------------------------------------------------------------- against Lava


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_bit_exact_with_lava_fixed_point(seed):
    pytest.importorskip("lava", reason="lava-nc is not installed")
    g = graph_with_everything(seed)
    x = (np.random.default_rng(seed).random((30, 3, 6)) < 0.4).astype(float)
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed")
    got = runner.run(x, record=RECORD, raw=True)
    module = lower_loihi(runner.graph, CompileOptions(dt=DT, timing="pipelined"))
    with torch.no_grad():
        res = module(x, record=RECORD, raw=True)
    for key, _, _ in KEYS:
        np.testing.assert_array_equal(res.records[key].numpy(), got[key], err_msg=key)
    assert got["h.spikes"].sum() > 0


@pytest.mark.slow
def test_quantization_aware_training_transfers_to_lava_exactly():
    pytest.importorskip("lava", reason="lava-nc is not installed")
    rng = np.random.default_rng(0)
    g = ntg.Graph("qat", seed=1)
    g.input("x", 10)
    g.population("h", ntg.LIF(tau_mem=5e-3, v_th=1.0), 16)
    g.dense("x", "h", scale=0.8)
    g.population("o", ntg.LI(tau_mem=5e-3), 2)
    g.dense("h", "o", scale=0.5)
    g.output("y", "o")
    # two classes: which half of the inputs fires more
    n, steps = 32, 20
    label = rng.integers(0, 2, n)
    rate = np.where(np.arange(10)[None, :] < 5, 0.6, 0.1)
    rate = np.where(label[:, None] == 1, rate[:, ::-1], rate)
    x = (rng.random((steps, n, 10)) < rate[None]).astype(float)
    qg, opts = quantized(g)
    module = lower_loihi(qg, opts)
    opt = torch.optim.Adam(module.parameters(), lr=0.02)
    target = torch.tensor(label)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        y = module(x).outputs["y"]
        loss = torch.nn.functional.cross_entropy(y.sum(0), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    with torch.no_grad():
        trained = module(x, raw=True).outputs["y"].numpy()
    runner = ntg.compile(module.to_graph(), "lava", dt=DT, timing="pipelined", precision="fixed")
    on_lava = runner.run(x, raw=True)["y"]
    np.testing.assert_array_equal(on_lava, trained)
