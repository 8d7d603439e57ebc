"""NaN guard: a non-finite training loss stops training with a message naming where the NaN first appeared."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim.learning import MSE, StopOnNonFinite, Trainer
from backends.torchsim.learning.nan_guard import NonFiniteSite, find_nonfinite

T, F = 8, 4


def build(excitatory: float | None = None) -> ntg.Graph:
    g = ntg.Graph("nan-guard", seed=0)
    g.input("x", F)
    g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.5), 6, excitatory=excitatory)
    g.dense("x", "h", scale=1.0)
    g.dense("h", "h", scale=0.3)
    g.population("o", ntg.LI(tau_mem=8e-3), 2)
    g.dense("h", "o", bias=np.zeros(2))
    g.output("y", "o")
    return g


def data(n: int = 4, value: float | None = None):
    rng = np.random.default_rng(0)
    x = (rng.random((n, T, F)) < 0.4).astype(np.float32)
    if value is not None:
        x[:] = value
    return x, rng.random((n, T, 2)).astype(np.float32)


def fit(model, x, y):
    guard = StopOnNonFinite()
    trainer = Trainer(model, MSE(), callbacks=[guard], progress=False)
    trainer.fit((x, y), epochs=3, batch_size=2)
    return trainer, guard


def test_nan_weight_names_the_projection():
    model = ntg.compile(build(), "torch", dt=1e-3)
    with torch.no_grad():
        model.projections["h->o"].weight[1, 2] = float("nan")
    trainer, guard = fit(model, *data())
    assert trainer.stop and trainer.iteration == 1  # stopped at the first batch
    assert guard.site == NonFiniteSite("projection", "h->o", "weight", "value", 1, 12, guard.site.sample)
    assert math.isnan(guard.site.sample)
    assert "first non-finite value: projection 'h->o': 'weight' has 1 of 12 entries non-finite (nan)" \
        in trainer.stop_reason
    assert trainer.history.stop_reason == trainer.stop_reason


def test_nan_population_parameter_names_the_population():
    model = ntg.compile(build(), "torch", dt=1e-3)
    with torch.no_grad():
        model.populations["o"].tau_mem.fill_(float("nan"))
    trainer, guard = fit(model, *data())
    assert trainer.stop
    assert (guard.site.kind, guard.site.node_id, guard.site.name, guard.site.what) == ("population", "o", "tau_mem", "value")
    assert "population 'o': 'tau_mem'" in trainer.stop_reason


def test_nan_input_names_the_input():
    x, _ = data()
    x[1, 3, 2] = np.nan
    site = find_nonfinite(ntg.compile(build(), "torch", dt=1e-3), torch.as_tensor(x).transpose(0, 1))
    assert (site.kind, site.node_id, site.name, site.count, site.total) == ("input", "x", "data", 1, x.size)


def test_overflowing_state_names_the_population_and_step():
    """Finite inputs and parameters whose dynamics overflow float32: the forward trace finds the origin."""
    model = ntg.compile(build(), "torch", dt=1e-3)
    with torch.no_grad():
        model.projections["x->h"].weight.fill_(10.0)  # every h neuron spikes at step 0
        model.projections["h->o"].weight.fill_(1e38)  # 6 spikes -> a current of 6e38 > float32 max
    x, y = data(value=1.0)
    trainer, guard = fit(model, x, y)
    assert trainer.stop
    site = guard.site
    assert (site.kind, site.node_id, site.what, site.step) == ("population", "o", "state", 0)
    assert "population 'o': state variable" in trainer.stop_reason and "at time step 0" in trainer.stop_reason


def test_nan_gradient_is_found_after_values():
    model = ntg.compile(build(), "torch", dt=1e-3)
    w = model.projections["x->h"].weight
    w.grad = torch.zeros_like(w)
    w.grad[0, 0] = float("inf")
    site = find_nonfinite(model)
    assert (site.kind, site.node_id, site.name, site.what, site.count, site.total) == \
        ("projection", "x->h", "weight", "gradient", 1, w.numel())
    assert site.describe() == "projection 'x->h': gradient of 'weight' has 1 of 24 entries non-finite (inf)"
    with torch.no_grad():  # a NaN value upstream wins over the gradient
        model.populations["o"].tau_mem.fill_(float("nan"))
    assert find_nonfinite(model).node_id == "o"


def test_finite_model_gives_none_and_unbounded_limits_are_not_flagged():
    model = ntg.compile(build(excitatory=0.5), "torch", dt=1e-3)  # Dale's law: h->h bounds hold +inf
    assert any(not torch.isfinite(b).all() for n, b in model.named_buffers() if n.endswith(("low", "high")))
    x, _ = data()
    assert find_nonfinite(model) is None
    assert find_nonfinite(model, torch.as_tensor(x).transpose(0, 1)) is None


def test_training_without_nan_is_not_stopped():
    trainer, guard = fit(ntg.compile(build(), "torch", dt=1e-3), *data())
    assert not trainer.stop and guard.site is None and trainer.epoch == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_describe_reports_the_value(bad):
    site = NonFiniteSite("projection", "a->b", "weight", "value", 2, 6, bad)
    assert site.describe() == f"projection 'a->b': 'weight' has 2 of 6 entries non-finite ({bad})"
