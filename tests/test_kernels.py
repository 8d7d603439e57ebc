"""The compiled scan kernels (backends/torchsim/kernels.py) against the scans' PyTorch loops.

Every case runs the same scan twice at float64, once on the kernels and once
under ``kernels.disabled()`` (the loops, which tests/test_fast_paths.py checks
against the step-by-step reference): identical spikes, membranes within 1e-12
and every gradient (drive, initial state, self-projection weight, bias and
history, learnable neuron parameters) within 1e-9.  The kernels sum the
recurrent product in another order than the loops' GEMM, so values agree to
rounding, not bit for bit.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.torchsim import ArcTan, FastSigmoid, Triangle
from backends.torchsim import kernels
from backends.torchsim.events import RowEvents, row_events
from backends.torchsim.scan import alif_scan, lif_scan, linear_scan
from backends.torchsim.scan_rate import if_scan

pytestmark = pytest.mark.skipif(not kernels.enabled(), reason="numba is not installed or NTGRAPH_KERNELS=0")

PARAMS = ("a", "v_leak", "r", "v_th", "v_reset")


class Calls:
    """Counts the calls of the kernels' entry points (monkeypatched)."""

    NAMES = ("lif_forward", "lif_backward_detached", "alif_forward", "alif_backward_detached", "linear_forward",
             "linear_backward")

    def __init__(self, monkeypatch) -> None:
        self.count = dict.fromkeys(self.NAMES, 0)
        for name in self.NAMES:
            original = getattr(kernels, name)

            def counting(*args, _original=original, _name=name, **kwargs):
                self.count[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(kernels, name, counting)


def make_case(seed: int, steps: int, batch: int, n: int, *, delay: Optional[int], bias: bool,
              learnable: tuple = (), dense_hist: bool = False) -> dict:
    """Inputs of one LIF scan (float64) with a firing rate of roughly 5-30%."""
    g = torch.Generator().manual_seed(seed)
    case = {
        "drive": (torch.randn(steps, batch, n, generator=g, dtype=torch.float64) * 0.8 + 0.6).requires_grad_(),
        "v0": (torch.rand(batch, n, generator=g, dtype=torch.float64) * 0.5).requires_grad_(),
        "a": torch.full((n,), 0.9, dtype=torch.float64) - 0.05 * torch.rand(n, generator=g, dtype=torch.float64),
        "v_leak": torch.zeros(n, dtype=torch.float64),
        "r": torch.full((n,), 2.0, dtype=torch.float64),
        "v_th": torch.ones(n, dtype=torch.float64),
        "v_reset": torch.full((n,), -0.1, dtype=torch.float64),
    }
    for name in learnable:
        case[name] = case[name].clone().requires_grad_()
    if delay is not None:
        case["weight"] = (torch.randn(n, n, generator=g, dtype=torch.float64) * 0.4).requires_grad_()
        hist = torch.rand(delay, batch, n, generator=g, dtype=torch.float64)
        case["hist"] = (hist if dense_hist else (hist < 0.3).double()).requires_grad_()
        case["delay"] = delay
    if bias:
        case["bias"] = (torch.randn(n, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    return case


def run_scan(case: dict, *, reset: str, surrogate, keep_v: bool, loss_on_v: bool) -> dict:
    """Spikes, membranes and the gradients of every input that needs one, for ``sum(z * u) (+ sum(v * w))``."""
    args = {k: v for k, v in case.items() if k not in ("drive", "v0") + PARAMS}
    z, v = lif_scan(case["drive"], case["v0"], case["a"], case["v_leak"], case["r"], case["v_th"], case["v_reset"],
                    zero_reset=reset == "zero", detach=True, surrogate=surrogate, keep_v=keep_v, **args)
    u = torch.linspace(-1.0, 1.0, z.numel(), dtype=z.dtype).reshape(z.shape)
    loss = (z * u).sum()
    if loss_on_v:
        loss = loss + (v * torch.linspace(0.5, -0.5, v.numel(), dtype=v.dtype).reshape(v.shape)).sum()
    leaves = {k: t for k, t in case.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {"z": z.detach(), "v": v.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


def assert_agree(kernel: dict, loop: dict) -> None:
    assert torch.equal(kernel["z"], loop["z"])
    assert 0.02 < float(loop["z"].mean()) < 0.6, "the case should spike, but not everywhere"
    torch.testing.assert_close(kernel["v"], loop["v"], atol=1e-12, rtol=0)
    assert kernel.keys() == loop.keys()
    for key in kernel:
        if key.startswith("d") and loop[key] is not None:
            torch.testing.assert_close(kernel[key], loop[key], atol=1e-9, rtol=1e-9, msg=key)


def both(case_args: dict, run_args: dict, monkeypatch) -> tuple[dict, dict, Calls]:
    calls = Calls(monkeypatch)
    kernel = run_scan(make_case(**case_args), **run_args)
    used = dict(calls.count)
    with kernels.disabled():
        loop = run_scan(make_case(**case_args), **run_args)
    assert calls.count == used, "the loops ran a kernel"
    return kernel, loop, calls


@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("delay", [None, 1, 3], ids=["feed-forward", "delay1", "delay3"])
@pytest.mark.parametrize("keep_v,loss_on_v", [(True, True), (False, False), (False, True)],
                         ids=["v-all", "no-v", "v-last"])
def test_lif_scan_kernels_equal_the_loops(monkeypatch, surrogate, reset, delay, keep_v, loss_on_v):
    case_args = dict(seed=3, steps=25, batch=5, n=17, delay=delay, bias=delay is not None)
    run_args = dict(reset=reset, surrogate=surrogate, keep_v=keep_v, loss_on_v=loss_on_v)
    kernel, loop, calls = both(case_args, run_args, monkeypatch)
    assert calls.count["lif_forward"] == 1 and calls.count["lif_backward_detached"] == 1
    assert_agree(kernel, loop)


@pytest.mark.parametrize("delay", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_self_projection_backward_without_torch_blas(monkeypatch, delay, dtype):
    """The backward kernels call torch's BLAS for the self-projection's GEMM per step (``kernels.TORCH_BLAS``);
    where torch's library exports none, a torch ``addmm`` and one compiled call per step run instead.  Both ways,
    at float64 and float32, LIF and ALIF, against the loops."""
    if not kernels.TORCH_BLAS:
        pytest.skip("torch's library exports no BLAS here: only the fallback runs")
    lif_args = dict(reset="zero", surrogate=FastSigmoid(), keep_v=False, loss_on_v=True)
    tol = dict(atol=1e-9, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)

    def lif() -> dict:
        case = make_case(seed=11, steps=20, batch=6, n=13, delay=delay, bias=True)
        return run_scan({k: (v.detach().to(dtype).requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
                             else v) for k, v in case.items()}, **lif_args)

    def alif() -> dict:  # float64
        return run_alif(5, reset="subtract", surrogate=FastSigmoid(), delay=delay)

    per_step = {"_lif_backward_one": 0, "_alif_backward_one": 0}
    for name in per_step:
        def counting(*args, _original=getattr(kernels, name), _name=name):
            per_step[_name] += 1
            return _original(*args)

        monkeypatch.setattr(kernels, name, counting)
    results = {}
    for blas in (True, False):
        monkeypatch.setattr(kernels, "TORCH_BLAS", blas)
        results[blas] = (lif(), alif())
        if blas:
            assert per_step == {"_lif_backward_one": 0, "_alif_backward_one": 0}, "the whole loop is one call"
    assert per_step == {"_lif_backward_one": 20, "_alif_backward_one": 30}, "the fallback runs one call per step"
    with kernels.disabled():
        loops = (lif(), alif())
    for name, loop in zip(("lif", "alif"), loops):
        for blas in (True, False):
            kernel = results[blas][0 if name == "lif" else 1]
            assert torch.equal(kernel["z"], loop["z"]), (name, blas)
            for key in kernel:
                if key.startswith("d") and loop[key] is not None:
                    torch.testing.assert_close(kernel[key], loop[key], **(tol if name == "lif" else
                                                                            dict(atol=1e-9, rtol=1e-9)),
                                               msg=f"{name} {key} blas={blas}")


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_split_over_torch_threads(monkeypatch, batch, dtype):
    """The backward kernel splits the batch over torch's OpenMP threads (``kernels.PARALLEL``, a parallel region
    of torch's own runtime); each row's arithmetic is unchanged, so LIF (with a self-projection and without) and
    CubaLIF agree with one thread to rounding, and with the loops."""
    if not kernels.PARALLEL:
        pytest.skip("torch's OpenMP runtime is not available to the kernels here")
    import numpy as np

    import ntgraph as ntg

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the split needs more than one torch thread
    regions = []
    original = kernels._GOMP_PARALLEL
    monkeypatch.setattr(kernels, "_GOMP_PARALLEL", lambda *args: regions.append(args[2]) or original(*args))

    def grads(model_name: str, recurrent: bool) -> dict:
        g = ntg.Graph("split", seed=4)
        g.input("x", 9)
        model = ntg.CubaLIF(tau_mem=0.008, tau_syn=0.004, v_th=0.5) if model_name == "cuba" else ntg.LIF(
            tau_mem=0.01, v_th=0.5)
        g.population("h", model, 13)
        g.dense("x", "h", scale=3.0)
        if recurrent:
            g.dense("h", "h", scale=1.2, delay=2, bias=np.full(13, 0.05))
        g.population("o", ntg.LI(tau_mem=0.01), 3)
        g.dense("h", "o")
        g.output("y", "o")
        sim = ntg.compile(g, "torch", dt=1e-3, dtype=dtype)
        x = (torch.rand(25, batch, 9, generator=torch.Generator().manual_seed(1), dtype=dtype) < 0.3).to(dtype)
        out = sim(x)["y"]
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape)).sum().backward()
        return {name: p.grad.clone() for name, p in sim.named_parameters()}

    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
    for model_name, recurrent in (("lif", True), ("lif", False), ("cuba", True)):
        regions.clear()
        split = grads(model_name, recurrent)
        assert regions == ([2] if batch > 1 else []), (model_name, recurrent, regions)
        monkeypatch.setattr(kernels, "PARALLEL", False)
        one = grads(model_name, recurrent)
        with kernels.disabled():
            loop = grads(model_name, recurrent)
        monkeypatch.setattr(kernels, "PARALLEL", True)
        for name, grad in loop.items():
            assert grad.abs().max() > 0, name
            torch.testing.assert_close(split[name], one[name], **tol, msg=f"{model_name} {name}")
            torch.testing.assert_close(split[name], grad, **tol, msg=f"{model_name} {name}")


def test_cuba_scan_backward_without_torch_blas(monkeypatch):
    """The CubaLIF scan's backward (synaptic adjoint) with torch's BLAS in the kernel and with the per-step
    fallback: the same gradients as the step loop at float64."""
    import numpy as np

    import ntgraph as ntg

    g = ntg.Graph("cuba", seed=2)
    g.input("x", 8)
    g.population("h", ntg.CubaLIF(tau_mem=0.008, tau_syn=0.004, v_th=0.5), 11)
    g.dense("x", "h", scale=3.0)
    g.dense("h", "h", scale=1.5, delay=2, bias=np.full(11, 0.1))
    g.output("s", "h")
    x = (torch.rand(30, 3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.3).double()

    def grads() -> dict:
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h.i", "h.v"])
        out = model(x)
        loss = (out["s"] * torch.linspace(-1, 1, out["s"].numel(), dtype=torch.float64).view(out["s"].shape)).sum()
        (loss + out["h.i"].sum() * 0.1 + out["h.v"][-1].sum()).backward()
        assert 0.02 < float(out["s"].detach().mean()) < 0.6
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    per_step = []
    original = kernels._lif_backward_one
    monkeypatch.setattr(kernels, "_lif_backward_one", lambda *a: per_step.append(1) or original(*a))
    with_blas = grads()
    monkeypatch.setattr(kernels, "TORCH_BLAS", False)
    without = grads()
    assert len(per_step) == 30, "the fallback runs one compiled call per step"
    with kernels.disabled():
        loop = grads()
    for name, grad in loop.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(with_blas[name], grad, atol=1e-9, rtol=1e-9, msg=name)
        torch.testing.assert_close(without[name], grad, atol=1e-9, rtol=1e-9, msg=name)


@pytest.mark.parametrize("learnable", [("a", "r"), ("v_leak", "v_reset"), ("v_th",), PARAMS],
                         ids=["a-r", "leak-reset", "threshold", "all"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_learnable_neuron_parameters(monkeypatch, learnable, reset):
    """Learnable parameters need ``G`` for every step (kept by the kernel); a learnable threshold takes the loops'
    unfused backward after the compiled forward."""
    case_args = dict(seed=8, steps=20, batch=3, n=11, delay=1, bias=True, learnable=learnable)
    run_args = dict(reset=reset, surrogate=FastSigmoid(), keep_v=False, loss_on_v=True)
    kernel, loop, calls = both(case_args, run_args, monkeypatch)
    assert calls.count["lif_forward"] == 1
    assert calls.count["lif_backward_detached"] == (0 if "v_th" in learnable else 1)
    assert_agree(kernel, loop)


def test_non_binary_history_and_its_gradient(monkeypatch):
    """The steps before ``delay`` read ``hist`` with any values (not only spikes)."""
    case_args = dict(seed=5, steps=12, batch=4, n=9, delay=2, bias=False, dense_hist=True)
    run_args = dict(reset="zero", surrogate=ArcTan(), keep_v=True, loss_on_v=False)
    kernel, loop, _ = both(case_args, run_args, monkeypatch)
    assert_agree(kernel, loop)
    assert float(kernel["dhist"].abs().sum()) > 0


def test_a_subclassed_surrogate_keeps_the_loop_backward(monkeypatch):
    """A subclass may change the derivative, so the backward kernel never stands in for it."""

    class Steeper(FastSigmoid):
        def derivative(self, x):
            return 2.0 * super().derivative(x)

    assert Steeper().kernel_code() is None and FastSigmoid().kernel_code() == (1, 25.0, 0.0)
    case_args = dict(seed=2, steps=15, batch=3, n=8, delay=1, bias=False)
    run_args = dict(reset="zero", surrogate=Steeper(), keep_v=False, loss_on_v=False)
    kernel, loop, calls = both(case_args, run_args, monkeypatch)
    assert calls.count["lif_forward"] == 1 and calls.count["lif_backward_detached"] == 0
    assert_agree(kernel, loop)


@pytest.mark.parametrize("delay", [1, 3])
def test_spike_events_of_the_forward_kernel(delay):
    """The forward kernel's spike list is the events of ``z`` as ``[T*B, n]`` (what ``torch.nonzero`` finds), and
    the self-projection's weight gradient from it equals the GEMM ``sum_{t >= d} (dL/dI_t)^T z_{t-d}``."""
    g = torch.Generator().manual_seed(delay)
    steps, batch, n = 9, 4, 13
    inp = torch.randn(steps, batch, n, generator=g, dtype=torch.float64) + 0.3
    vec = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    hist = (torch.rand(delay, batch, n, generator=g, dtype=torch.float64) < 0.3).double()
    _, z, _, _, (ptr, cols) = kernels.lif_forward(inp, torch.zeros(batch, n, dtype=torch.float64), vec(0.9),
                                                  vec(0.5), vec(-0.05), vec(-1.0), vec(1.0), True, hist,
                                                  torch.randn(n, n, generator=g, dtype=torch.float64) * 0.3, delay,
                                                  False, False)
    assert 0.05 < float(z.mean()) < 0.7
    events = RowEvents(ptr, cols, None, n)
    counts = ptr[1:] - ptr[:-1]
    rows = torch.repeat_interleave(torch.arange(steps * batch), counts)
    assert torch.equal(torch.stack([rows, cols], 1), torch.nonzero(z.reshape(-1, n)))
    grad_current = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    expected = grad_current[delay:].reshape(-1, n).t() @ z[:-delay].reshape(-1, n)
    got = events.head((steps - delay) * batch).weight_grad(grad_current[delay:].reshape(-1, n))
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_the_spike_list_grows_past_the_capacity_of_the_last_call():
    """The kernel sizes its spike list from the last call of the same shape; a run with far more spikes restarts
    with room for every entry and gives the same result as the loops."""
    n, batch, steps = 8, 3, 10
    one = torch.ones((), dtype=torch.float64)
    outs = []
    for level in (-0.5, 2.0):  # nearly silent, then spiking at every step
        drive = torch.full((steps, batch, n), level, dtype=torch.float64)
        runs = []
        for disabled in (False, True):
            with torch.no_grad(), kernels.disabled() if disabled else contextlib.nullcontext():
                runs.append(lif_scan(drive, torch.zeros(batch, n, dtype=torch.float64), 0.5 * one, 0 * one, one,
                                     one, 0 * one, zero_reset=True, detach=True, surrogate=FastSigmoid())[0])
        assert torch.equal(runs[0], runs[1])
        outs.append(runs[0])
    assert outs[0].sum() == 0 and outs[1].mean() > 0.4


def test_a_projection_reads_the_attached_spike_events(monkeypatch):
    """A narrow projection from a compiled scan's spikes sums from the scan's spike list (no extraction pass, any
    width) and gives the dense path's values and gradients; an in-place edit of the spikes drops the list."""
    import ntgraph as ntg
    from backends.torchsim import events as events_module
    from backends.torchsim import projections

    g = ntg.Graph("readout", seed=1)
    g.input("x", 30)
    g.population("h", ntg.LIF(tau_mem=10e-3, v_th=1.0, reset="zero"), 40)
    g.population("o", ntg.LI(tau_mem=10e-3), 5)
    g.dense("x", "h", scale=3.0)
    g.dense("h", "o", scale=1.0)
    g.output("y", "o")
    x = torch.tensor((np.random.default_rng(2).random((40, 30, 30)) < 0.2) * 1.0)
    extractions = []
    original = projections.row_events
    monkeypatch.setattr(projections, "row_events", lambda t, *a: extractions.append(t.shape) or original(t, *a))
    results = []
    for mode in ("auto", "dense"):
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
        projections.set_event_driven(model, mode, threshold=0.5)
        y = model(x)["y"]
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        results.append((y.detach(), model.projections["h->o"].weight.grad))
        if mode == "auto":
            assert model._proj["h->o"].last_path == "event"
            assert all(shape[-1] == 30 for shape in extractions)  # only the input was scanned
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=1e-10)
    z = torch.zeros(4, 3)
    events_module.attach_events(z, row_events(z))
    assert events_module.attached_events(z) is not None
    z.add_(1.0)
    assert events_module.attached_events(z) is None


@pytest.mark.parametrize("with_v", [True, False])
@pytest.mark.parametrize("delay", [None, 2])
def test_inference_without_autograd(monkeypatch, with_v, delay):
    case = make_case(seed=4, steps=30, batch=3, n=10, delay=delay, bias=True)
    args = {k: v for k, v in case.items() if k not in ("drive", "v0") + PARAMS}
    calls = Calls(monkeypatch)
    outputs = []
    for disabled in (False, True):
        with torch.no_grad(), kernels.disabled() if disabled else contextlib.nullcontext():
            outputs.append(lif_scan(case["drive"], case["v0"], case["a"], case["v_leak"], case["r"], case["v_th"],
                                    case["v_reset"], zero_reset=True, detach=True, surrogate=FastSigmoid(),
                                    keep_v=with_v, **args))
    assert calls.count["lif_forward"] == 1
    (z_k, v_k), (z_l, v_l) = outputs
    assert torch.equal(z_k, z_l) and z_k.sum() > 10
    torch.testing.assert_close(v_k, v_l, atol=1e-12, rtol=0)


def run_alif(seed: int, *, reset: str, surrogate, delay: Optional[int], detach: bool = True) -> dict:
    """Spikes, membranes, adaptation and every input gradient of one ALIF scan at float64."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    steps, batch, n = 30, 4, 11
    f64 = dict(dtype=torch.float64)
    leaves = {"drive": (torch.randn(steps, batch, n, generator=g, **f64) * 0.8 + 0.5).requires_grad_(),
              "v0": (torch.rand(batch, n, generator=g, **f64) * 0.3).requires_grad_(),
              "adapt0": (torch.rand(batch, n, generator=g, **f64) * 0.2).requires_grad_()}
    c = SimpleNamespace(a=torch.linspace(0.7, 0.95, n, **f64), rho=torch.linspace(0.9, 0.99, n, **f64),
                        beta=torch.linspace(0.2, 1.5, n, **f64), v_th=torch.full((n,), 0.5, **f64),
                        v_leak=torch.full((n,), 0.05, **f64), v_reset=torch.full((n,), -0.1, **f64),
                        r=torch.full((n,), 2.0, **f64))
    extra = {}
    if delay is not None:
        leaves["weight"] = (torch.randn(n, n, generator=g, **f64) * 0.4).requires_grad_()
        leaves["hist"] = (torch.rand(delay, batch, n, generator=g, **f64) < 0.3).double().requires_grad_()
        leaves["bias"] = (torch.randn(n, generator=g, **f64) * 0.05).requires_grad_()
        extra = dict(weight=leaves["weight"], hist=leaves["hist"], bias=leaves["bias"], delay=delay)
    z, v, ad = alif_scan(leaves["drive"], leaves["v0"], leaves["adapt0"], c, zero_reset=reset == "zero",
                         detach=detach, surrogate=surrogate, **extra)
    weights = [torch.linspace(-1.0, 1.0, t.numel(), **f64).reshape(t.shape) * s for t, s in ((z, 1.0), (v, 0.3),
                                                                                         (ad, -0.2))]
    loss = sum((t * w).sum() for t, w in zip((z, v, ad), weights))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return {"z": z.detach(), "v": v.detach(), "ad": ad.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("delay", [None, 1, 2], ids=["feed-forward", "delay1", "delay2"])
def test_alif_kernels_equal_the_loops(monkeypatch, surrogate, reset, delay):
    """The compiled ALIF forward (event-driven recurrence, spike lists) and detached backward against the loops:
    identical spikes, states within 1e-12, every gradient (drive, initial state and adaptation, weight, history,
    bias) within 1e-9."""
    calls = Calls(monkeypatch)
    kernel = run_alif(7, reset=reset, surrogate=surrogate, delay=delay)
    assert calls.count["alif_forward"] == 1 and calls.count["alif_backward_detached"] == 1
    with kernels.disabled():
        loop = run_alif(7, reset=reset, surrogate=surrogate, delay=delay)
    assert torch.equal(kernel["z"], loop["z"]) and 0.02 < float(loop["z"].mean()) < 0.6
    for key in kernel:
        if key != "z":
            torch.testing.assert_close(kernel[key], loop[key], atol=1e-9 if key.startswith("d") else 1e-12,
                                       rtol=1e-9 if key.startswith("d") else 0, msg=key)


def test_alif_attached_reset_keeps_the_loop_backward(monkeypatch):
    """Without ``detach_reset`` the ALIF backward runs the loops (after the compiled forward); same values."""
    calls = Calls(monkeypatch)
    kernel = run_alif(3, reset="subtract", surrogate=FastSigmoid(), delay=1, detach=False)
    assert calls.count["alif_forward"] == 1 and calls.count["alif_backward_detached"] == 0
    with kernels.disabled():
        loop = run_alif(3, reset="subtract", surrogate=FastSigmoid(), delay=1, detach=False)
    assert torch.equal(kernel["z"], loop["z"])
    for key in kernel:
        torch.testing.assert_close(kernel[key], loop[key], atol=1e-9, rtol=1e-9, msg=key)


def run_if(seed: int, *, reset: str, delay: Optional[int], learnable: tuple = (), detach: bool = True,
           keep_v: bool = True) -> dict:
    """Spikes, membranes and every input gradient of one IF scan at float64 (``learnable``: gain, v_th)."""
    g = torch.Generator().manual_seed(seed)
    steps, batch, n = 25, 3, 9
    f64 = dict(dtype=torch.float64)
    leaves = {"drive": (torch.randn(steps, batch, n, generator=g, **f64) * 0.5 + 0.25).requires_grad_(),
              "v0": (torch.rand(batch, n, generator=g, **f64) * 0.3).requires_grad_()}
    params = {"gain": torch.full((n,), 0.8, **f64), "v_th": torch.ones(n, **f64),
              "v_reset": torch.full((n,), -0.2, **f64)}
    for name in learnable:
        params[name] = params[name].clone().requires_grad_()
        leaves[name] = params[name]
    extra = {}
    if delay is not None:
        leaves["weight"] = (torch.randn(n, n, generator=g, **f64) * 0.3).requires_grad_()
        leaves["hist"] = (torch.rand(delay, batch, n, generator=g, **f64) < 0.3).double().requires_grad_()
        extra = dict(weight=leaves["weight"], hist=leaves["hist"], delay=delay)
    z, v = if_scan(leaves["drive"], leaves["v0"], params["gain"], params["v_th"], params["v_reset"],
                   zero_reset=reset == "zero", detach=detach, surrogate=FastSigmoid(), keep_v=keep_v, **extra)
    loss = (z * torch.linspace(-1, 1, z.numel(), **f64).reshape(z.shape)).sum() + \
        (v * torch.linspace(0.5, -0.5, v.numel(), **f64).reshape(v.shape)).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return {"z": z.detach(), "v": v.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("delay", [None, 1, 2], ids=["feed-forward", "delay1", "delay2"])
@pytest.mark.parametrize("learnable,keep_v", [((), True), (("gain",), False), (("v_th",), True)],
                         ids=["fixed", "gain-no-v", "threshold"])
def test_if_scan_runs_the_lif_kernels(monkeypatch, reset, delay, learnable, keep_v):
    """IF is the LIF recurrence with a = 1 and no leak: the LIF kernels run it (a learnable threshold takes the
    loops' backward from the kernel's shifted membrane), with the loops' spikes and gradients."""
    calls = Calls(monkeypatch)
    kernel = run_if(5, reset=reset, delay=delay, learnable=learnable, keep_v=keep_v)
    assert calls.count["lif_forward"] == 1
    assert calls.count["lif_backward_detached"] == (0 if "v_th" in learnable else 1)
    with kernels.disabled():
        loop = run_if(5, reset=reset, delay=delay, learnable=learnable, keep_v=keep_v)
    assert torch.equal(kernel["z"], loop["z"]) and 0.02 < float(loop["z"].mean()) < 0.6
    for key in kernel:
        if key != "z":
            torch.testing.assert_close(kernel[key], loop[key], atol=1e-9, rtol=1e-9, msg=key)


@pytest.mark.parametrize("k_shape", [(), (7,), (4, 7)], ids=["scalar", "per-neuron", "per-sample"])
def test_linear_scan_kernels_equal_the_loop(monkeypatch, k_shape):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(20, 4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    k = (0.5 + 0.4 * torch.rand(k_shape, generator=g, dtype=torch.float64)).requires_grad_()
    weights = torch.randn(20, 4, 7, generator=g, dtype=torch.float64)
    calls = Calls(monkeypatch)
    results = []
    for disabled in (False, True):
        with kernels.disabled() if disabled else contextlib.nullcontext():
            y = linear_scan(u, y0, k)
            results.append((y.detach(), *torch.autograd.grad((y * weights).sum(), [u, y0, k])))
    assert calls.count["linear_forward"] == 1 and calls.count["linear_backward"] == 1
    for kernel, loop in zip(*results):
        torch.testing.assert_close(kernel, loop, atol=1e-12, rtol=1e-12)


def test_wide_feed_forward_steps_keep_the_loops(monkeypatch):
    """Without a self-projection the kernels run only below KERNEL_MAX_STEP_ELEMENTS entries per step."""
    n = kernels.KERNEL_MAX_STEP_ELEMENTS // 2
    assert kernels.pays(1, n, False) and not kernels.pays(2, n, False) and kernels.pays(2, n, True)
    calls = Calls(monkeypatch)
    drive = torch.full((3, 2, n), 0.8, dtype=torch.float64, requires_grad=True)
    one = torch.ones((), dtype=torch.float64)
    z, _ = lif_scan(drive, torch.zeros(2, n, dtype=torch.float64), 0.9 * one, 0 * one, one, one, 0 * one,
                    zero_reset=True, detach=True, surrogate=FastSigmoid(), keep_v=False)
    z.sum().backward()
    assert calls.count == dict.fromkeys(Calls.NAMES, 0)


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 12), batch=st.integers(1, 4), n=st.integers(1, 9), delay=st.sampled_from([None, 1, 2, 5]),
       reset=st.sampled_from(["zero", "subtract"]), seed=st.integers(0, 2 ** 16), keep_v=st.booleans())
def test_property_kernels_equal_the_loops(steps, batch, n, delay, reset, seed, keep_v):
    """Any shape, including ``T <= delay`` and a single neuron: the same spikes and gradients as the loops."""
    case_args = dict(seed=seed, steps=steps, batch=batch, n=n, delay=delay, bias=True)
    run_args = dict(reset=reset, surrogate=FastSigmoid(), keep_v=keep_v, loss_on_v=True)
    kernel = run_scan(make_case(**case_args), **run_args)
    with kernels.disabled():
        loop = run_scan(make_case(**case_args), **run_args)
    assert torch.equal(kernel["z"], loop["z"])
    torch.testing.assert_close(kernel["v"], loop["v"], atol=1e-12, rtol=0)
    for key in kernel:
        if key.startswith("d") and loop[key] is not None:
            torch.testing.assert_close(kernel[key], loop[key], atol=1e-9, rtol=1e-9, msg=key)


@pytest.mark.slow
def test_kernels_stay_in_bounds(tmp_path):
    """The kernels run with ``boundscheck=False``; rerun their tests (and the event tests) with numba's bounds
    checks forced on, in a fresh process with its own cache: an out-of-bounds access raises instead of reading
    or writing memory it must not (this found a read of a not-yet-written row offset)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                             "tests/test_kernels.py", "tests/test_events.py"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
