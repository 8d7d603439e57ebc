"""Objectives, metrics and regularisers of the torch learning package, against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ntgraph as ntg
import ntgraph.metrics as npm
from backends.torchsim.learning import (
    BPTT,
    MSE,
    CrossEntropyOverTime,
    FiringRateTarget,
    WeightL1,
    WeightL2,
    accuracy,
    confusion_matrix,
    mse,
    predict,
    pvar,
)
from backends.torchsim.learning.algorithms import total_loss

ATOL = 1e-12  # float64 throughout


def log_softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.fixture
def readout():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(7, 5, 4, generator=gen, dtype=torch.float64) * 2
    labels = torch.tensor([0, 3, 1, 1, 2])
    return y, labels


# ----------------------------------------------------------------------------- cross-entropy
def hand_ce(y: np.ndarray, labels: np.ndarray, reduce: str) -> float:
    """Cross-entropy written out with numpy: -log softmax at the label, mean over the batch."""
    b = np.arange(len(labels))
    if reduce == "max":
        return float(-log_softmax_np(y.max(axis=0))[b, labels].mean())
    if reduce == "last":
        return float(-log_softmax_np(y[-1])[b, labels].mean())
    return float(np.mean([-log_softmax_np(y_t)[b, labels].mean() for y_t in y]))


@pytest.mark.parametrize("reduce", ["max", "mean", "last"])
def test_cross_entropy_matches_hand_computation(readout, reduce):
    y, labels = readout
    loss = CrossEntropyOverTime(reduce=reduce)(y, labels)
    assert loss.ndim == 0
    assert abs(float(loss) - hand_ce(y.numpy(), labels.numpy(), reduce)) < ATOL


def test_cross_entropy_reductions_use_torch_reference(readout):
    y, labels = readout
    torch.testing.assert_close(CrossEntropyOverTime(reduce="max")(y, labels), F.cross_entropy(y.max(0).values, labels),
                               atol=ATOL, rtol=0)
    per_step = torch.stack([F.cross_entropy(y_t, labels) for y_t in y]).mean()
    torch.testing.assert_close(CrossEntropyOverTime(reduce="mean")(y, labels), per_step, atol=ATOL, rtol=0)
    # "mean" is the mean of per-step losses, not the loss of the mean logits
    assert abs(float(per_step) - float(F.cross_entropy(y.mean(0), labels))) > 1e-3


@pytest.mark.parametrize("reduce", ["mean", "last"])
def test_step_losses_sum_to_the_loss(readout, reduce):
    y, labels = readout
    objective = CrossEntropyOverTime(reduce=reduce)
    steps = y.shape[0]
    parts = [objective.step_loss(y[t], labels, t, steps) for t in range(steps)]
    torch.testing.assert_close(sum(parts), objective(y, labels), atol=ATOL, rtol=0)
    # gradients decompose too: d(step_loss_t)/dy_t equals the slice t of d(loss)/dy
    y_req = y.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(objective(y_req, labels), y_req)
    for t in range(steps):
        y_t = y[t].clone().requires_grad_(True)
        (g_t,) = torch.autograd.grad(objective.step_loss(y_t, labels, t, steps), y_t)
        torch.testing.assert_close(g_t, full[t], atol=ATOL, rtol=0)
    if reduce == "last":
        assert torch.count_nonzero(full[:-1]) == 0 and torch.count_nonzero(full[-1]) > 0


def test_max_reduction_has_no_step_loss(readout):
    y, labels = readout
    with pytest.raises(ntg.ValidationError, match="not decomposable over time"):
        CrossEntropyOverTime(reduce="max").step_loss(y[0], labels, 0, y.shape[0])


def test_soft_labels_equal_hard_labels_when_one_hot(readout):
    y, labels = readout
    onehot = F.one_hot(labels, 4).double()
    for reduce in ("max", "mean", "last"):
        objective = CrossEntropyOverTime(reduce=reduce)
        torch.testing.assert_close(objective(y, onehot), objective(y, labels), atol=ATOL, rtol=0)


def test_cross_entropy_rejects_bad_targets(readout):
    y, labels = readout
    objective = CrossEntropyOverTime()
    with pytest.raises(ntg.ValidationError, match=r"labels in \[0, 4\).*got values in \[0, 4\]"):
        objective(y, torch.tensor([0, 4, 1, 1, 2]))
    with pytest.raises(ntg.ValidationError, match="expected integer class labels"):
        objective(y, labels.double())
    with pytest.raises(ntg.ShapeError, match=r"shape \[5\]"):
        objective(y, labels[:3])
    with pytest.raises(ntg.ShapeError, match=r"\[T, batch, classes\]"):
        objective(y[0], labels)
    with pytest.raises(ntg.ValidationError, match="reduce"):
        CrossEntropyOverTime(reduce="sum")


# ----------------------------------------------------------------------------- MSE
def test_mse_and_its_step_decomposition():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(6, 3, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(6, 3, 2, generator=gen, dtype=torch.float64)
    objective = MSE()
    expected = float(np.mean((y.numpy() - target.numpy()) ** 2))
    assert abs(float(objective(y, target)) - expected) < ATOL
    parts = sum(objective.step_loss(y[t], target, t, 6) for t in range(6))
    assert abs(float(parts) - expected) < ATOL
    assert abs(float(mse(y, target)) - expected) < ATOL
    with pytest.raises(ntg.ShapeError, match=r"expected a target of shape \(6, 3, 2\)"):
        objective(y, target[:, :, :1])


# ----------------------------------------------------------------------------- metrics
def test_accuracy_follows_the_reduction():
    # sample 0: max -> 0 (3 > 1), mean -> 0 (sum of margins 3-1-1 > 0), last -> 1
    # sample 1: max -> 0 (1.5 > 1), mean -> 1 (1.5-2 < 0), last -> 1
    # sample 2: max -> 1, mean -> 1, last -> 0
    y = torch.tensor([
        [[3.0, 0.0], [1.5, 0.0], [0.0, 2.0]],
        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],
        [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]],
    ], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    assert predict(y, "max").tolist() == [0, 0, 1]
    assert predict(y, "mean").tolist() == [0, 1, 1]
    assert predict(y, "last").tolist() == [1, 1, 0]
    assert float(accuracy(y, labels, "max")) == pytest.approx(2 / 3, abs=1e-7)
    assert float(accuracy(y, labels, "mean")) == 1.0
    assert float(accuracy(y, labels, "last")) == pytest.approx(1 / 3, abs=1e-7)


@pytest.mark.parametrize("reduce", ["max", "mean", "last"])
def test_prediction_is_the_label_with_the_smallest_loss(readout, reduce):
    y, _ = readout
    objective = CrossEntropyOverTime(reduce=reduce)
    losses = torch.stack([
        torch.stack([objective(y[:, b:b + 1], torch.tensor([c])) for c in range(y.shape[2])])
        for b in range(y.shape[1])
    ])
    assert torch.equal(losses.argmin(dim=1), objective.predict(y))


def test_confusion_matrix_on_known_input():
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    labels = torch.tensor([0, 1, 2, 2, 2, 1, 1])
    expected = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 2]])
    assert np.array_equal(confusion_matrix(pred, labels, 3).numpy(), expected)
    assert np.array_equal(npm.confusion_matrix(pred.numpy(), labels.numpy(), 3), expected)
    with pytest.raises(ntg.ValidationError, match=r"in \[0, 2\)"):
        confusion_matrix(pred, labels, 2)
    with pytest.raises(ntg.ValidationError, match="integer"):
        confusion_matrix(pred.double(), labels, 3)


def test_pvar_definition():
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(9, 4, 3, generator=gen, dtype=torch.float64)
    pred = target + 0.3 * torch.randn(9, 4, 3, generator=gen, dtype=torch.float64)
    t, p = target.numpy(), pred.numpy()
    # per sample: 1 - mean_{t,n} err^2 / var_{t,n}(target) (ddof 1 as torch.var), then mean over the batch
    per_sample = [1 - np.mean((p[:, b] - t[:, b]) ** 2) / np.var(t[:, b], ddof=1) for b in range(4)]
    assert abs(float(pvar(pred, target)) - np.mean(per_sample)) < ATOL
    assert abs(npm.pvar(p, t) - np.mean(per_sample)) < ATOL
    per_sample0 = [1 - np.mean((p[:, b] - t[:, b]) ** 2) / np.var(t[:, b]) for b in range(4)]
    assert abs(float(pvar(pred, target, correction=0)) - np.mean(per_sample0)) < ATOL
    # NeuroTorch's PVarianceLoss on one sample: 1 - MSE(x, y) / torch.var(y)
    neurotorch = 1 - F.mse_loss(pred[:, 0], target[:, 0]) / torch.var(target[:, 0])
    assert abs(float(pvar(pred[:, 0], target[:, 0])) - float(neurotorch)) < ATOL
    assert float(pvar(target, target)) == 1.0
    # predicting each sample's mean explains nothing (exactly 0 with correction=0)
    mean_pred = target.mean(dim=(0, 2), keepdim=True).expand_as(target)
    assert abs(float(pvar(mean_pred, target, correction=0))) < ATOL
    with pytest.raises(ntg.ShapeError):
        pvar(pred, target[:, :2])


# ----------------------------------------------------------------------------- regularisers
def small_graph(dale=None):
    g = ntg.Graph("reg", seed=3)
    g.input("x", 4)
    g.population("h", ntg.LIF(tau_mem=5e-3, v_th=0.3), 6, excitatory=dale)
    g.dense("x", "h", scale=1.5)
    g.population("o", ntg.LI(tau_mem=5e-3), 2)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def grads(model, objective, x, target):
    for p in model.parameters():
        p.grad = None
    objective.prepare(model)
    BPTT().train_step(model, x, target, objective, None)
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(12, 3, 4, generator=gen) < 0.5).double()
    return x, torch.tensor([0, 1, 1])


@pytest.mark.parametrize("dale", [None, 0.5])
def test_weight_penalties_add_their_exact_gradients(batch, dale):
    x, labels = batch
    model = ntg.compile(small_graph(dale), "torch", dt=1e-3, dtype=torch.float64)
    base = grads(model, CrossEntropyOverTime(), x, labels)
    l1 = grads(model, CrossEntropyOverTime(regularizers=[WeightL1(0.01, projections=["x->h"])]), x, labels)
    l2 = grads(model, CrossEntropyOverTime(regularizers=[WeightL2(0.02)]), x, labels)
    for name in base:
        raw = dict(model.named_parameters())[name]
        # |sign*|w|| = |w| and (sign*|w|)^2 = w^2, so on the free parameter the extra gradient is
        # 0.01*sign(w) (L1, only on x->h) and 2*0.02*w (L2, every projection)
        expected_l1 = 0.01 * torch.sign(raw) if name == "projections.x->h.weight" else torch.zeros_like(raw)
        torch.testing.assert_close(l1[name] - base[name], expected_l1, atol=1e-12, rtol=0)
        torch.testing.assert_close(l2[name] - base[name], 2 * 0.02 * raw.detach(), atol=1e-12, rtol=0)


def test_weight_penalty_values_and_binding():
    model = ntg.compile(small_graph(), "torch", dt=1e-3, dtype=torch.float64)
    reg = WeightL2(0.5)
    with pytest.raises(ntg.ValidationError, match="prepare"):
        reg(None)
    reg.prepare(model)
    w = [m.effective_weight().detach() for m in model.projections.values()]
    assert abs(float(reg(None).detach()) - 0.5 * sum(float((v ** 2).sum()) for v in w)) < ATOL
    with pytest.raises(ntg.ValidationError, match="no projection"):
        WeightL1(1.0, projections=["nope"]).prepare(model)


def test_firing_rate_target_value_and_recording(batch):
    x, labels = batch
    model = ntg.compile(small_graph(), "torch", dt=1e-3, dtype=torch.float64)
    reg = FiringRateTarget("h", target_hz=50.0, weight=2.0)
    objective = CrossEntropyOverTime(regularizers=[reg])
    assert model.recording == []
    objective.prepare(model)
    assert model.recording == ["h.spikes"] and reg.dt == 1e-3
    with torch.no_grad():
        result = model(x)
    z = result.records["h.spikes"].detach().numpy()
    rate = z.mean(axis=(0, 1))  # spikes per step, per neuron
    assert 0 < rate.mean() < 1
    expected = 2.0 * np.mean((rate - 50.0 * 1e-3) ** 2)
    assert abs(float(reg(result)) - expected) < ATOL
    pop = FiringRateTarget("h", target_hz=50.0, weight=2.0, per_neuron=False)
    pop.prepare(model)
    assert abs(float(pop(result)) - 2.0 * (rate.mean() - 0.05) ** 2) < ATOL
    # the regulariser is part of the algorithms' loss
    expected_total = float(CrossEntropyOverTime()(result["y"], labels)) + expected
    assert abs(float(total_loss(model, result, labels, objective)) - expected_total) < ATOL


@pytest.mark.parametrize("target_hz", [0.0, 800.0])
def test_firing_rate_target_pulls_rates_towards_target(batch, target_hz):
    x, _ = batch
    model = ntg.compile(small_graph(), "torch", dt=1e-3, dtype=torch.float64)
    reg = FiringRateTarget("h", target_hz=target_hz, weight=1.0)
    reg.prepare(model)
    model.set_record(["h"])
    opt = torch.optim.SGD(model.parameters(), lr=200.0)  # rates respond weakly: the gradient is ~1e-3

    def mean_rate():
        return float(model(x).records["h.spikes"].mean())

    with torch.no_grad():
        before, rate_before = float(reg(model(x))), mean_rate()
    for _ in range(3):
        opt.zero_grad()
        reg(model(x)).backward()
        opt.step()
    with torch.no_grad():
        after, rate_after = float(reg(model(x))), mean_rate()
    assert before > 0 and after < 0.5 * before
    assert (rate_after < rate_before) if target_hz == 0.0 else (rate_after > rate_before)


def test_firing_rate_target_errors(batch):
    model = ntg.compile(small_graph(), "torch", dt=1e-3)
    with pytest.raises(ntg.ValidationError, match="expected a spiking population"):
        FiringRateTarget("o", 10.0).prepare(model)
    with pytest.raises(ntg.ValidationError, match="no Population 'q'"):
        FiringRateTarget("q", 10.0).prepare(model)
    with pytest.raises(ntg.ValidationError, match="differs from the model's dt"):
        FiringRateTarget("h", 10.0, dt=2e-3).prepare(model)
    reg = FiringRateTarget("h", 10.0)
    reg.prepare(model)
    with pytest.raises(ntg.ValidationError, match="has no record 'h.spikes'"):
        reg(model(batch[0]))
