"""Every example script runs (smoke test with small sizes) and gives sensible numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(SMOKE)


def smoke_balanced():
    result = load("balanced_ei_network").main(steps=200)
    assert result["rate_exc_hz"] > 0 and result["max_row_imbalance"] < 1e-9


def smoke_wilson_cowan():
    result = load("wilson_cowan_network").main(steps=100, iterations=15)
    assert result["last_loss"] < result["first_loss"]


def smoke_train_in_own_loop():
    result = load("train_in_own_loop").main(epochs=3, steps=30)
    assert result["last_loss"] < result["first_loss"]


def smoke_train_randman():
    result = load("train_randman").run("eprop", epochs=1, samples_per_class=6, progress=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_loss"] < 10.0
    print(result)


def smoke_train_mnist5k():
    result = load("train_mnist5k").run(1, n_hidden=16, limit=48, progress=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_loss"] < 10.0
    print(result)


def smoke_reconstruct_teacher():
    result = load("reconstruct_teacher").run("wc", iterations=3, progress=False)
    assert result["test_pvar"] > 0.5  # the Wilson-Cowan student starts close to the teacher
    print(result)


def smoke_train_distributed():
    result = load("train_distributed").smoke()  # 2 ranks under torchrun
    assert result["world_size"] == 2 and result["epochs"] == 2 and result["replicas_identical"]
    assert result["checkpoints"] == ["best.pt", "last.pt"]
    assert result["gradients"] == "allreduce" and result["last_loss"] < 10.0


def smoke_reconstruct_activity():
    import numpy as np
    import torch

    import ntgraph as ntg

    module = load("reconstruct_activity")
    summary = module.main(["--smoke"])
    assert len(summary["results"]) == 8  # {bold, teacher} x {wc, snn} x {bptt, eprop}
    assert all(np.isfinite(r["test_pvar"]) and np.isfinite(r["test_pvar_segment"]) for r in summary["results"])
    assert summary["datasets"]["bold"]["n_regions"] == 94
    # the library's e-prop gives the exact gradient of the teacher-forced Wilson-Cowan loss (checked against autograd)
    from backends.torchsim import learning as L

    model = ntg.compile(module.wc_graph(6, 0, teacher_forced=True), "torch", dt=module.DT).double()
    rng = np.random.default_rng(1)
    x, y = (torch.as_tensor(rng.uniform(0.2, 0.8, (12, 3, 6))) for _ in range(2))
    with module._starting_from(model, "units", x[0]):
        loss = L.EProp().compute_gradients(model, x, y, L.MSE("y")).loss
    eprop = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out = model(x, state=module._start_state(model, "units", x[0]))["y"]
    reference = torch.mean((out - y) ** 2)
    reference.backward()
    assert abs(loss - reference.item()) < 1e-12
    for got, want in zip(eprop, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-15)


def smoke_train_once_run_everywhere():
    # float64 reference: Brian2 and ONNX then reproduce every spike (float32 against float64 could split a threshold tie)
    summary = load("train_once_run_everywhere").main(["--smoke", "--dtype", "float64"])
    rows = {(t, r["simulator"]): r for t, rs in summary["reports"].items() for r in rs}
    reference = rows["sync", "torch"]["accuracy"]
    for key in (("sync", "onnx"), ("sync", "brian2"), ("pipelined", "torch"), ("pipelined", "brian2")):
        assert rows[key]["status"] in ("ok", "reference") and rows[key]["accuracy"] == reference, key
        assert key[1] == "torch" or rows[key]["agreement"] == 1.0, key
    assert summary["exported"]["onnx file (onnxruntime)"] == reference
    assert summary["exported"]["nir file read back (torch)"] == reference


def smoke_classification_experiment():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = load("classification_experiment").main(
            ["--smoke", "--datasets", "digits-rate", "grasshopper", "--out-json", f"{tmp}/c.json", "--out-fig", f"{tmp}/c.png"])
        assert Path(tmp, "c.png").stat().st_size > 0
    assert set(result["summary"]) == {"digits-rate", "grasshopper"} and len(result["runs"]) == 8
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in result["runs"])


def smoke_ablation_experiment():
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        result = load("ablation_experiment").main(
            ["--smoke", "--datasets", "digits-rate", "--models", "lif", "wc+dale",
             "--out-json", f"{tmp}/a.json", "--out-fig", f"{tmp}/a.png"])
        assert Path(tmp, "a.png").stat().st_size > 0
    assert len(result["runs"]) == 4 and all(len(r["accuracy"]) == 3 for r in result["runs"])
    assert all(0.0 <= a <= 1.0 for r in result["runs"] for a in r["accuracy"])
    with tempfile.TemporaryDirectory() as tmp:  # networks fitted to the chaotic teacher, recurrent matrix ablated
        result = load("ablation_experiment").main(
            ["--task", "reconstruction", "--smoke", "--models", "lif+dale", "wc",
             "--out-json", f"{tmp}/r.json", "--out-fig", f"{tmp}/r.png"])
        assert Path(tmp, "r.png").stat().st_size > 0
    assert [r["projection"] for r in result["runs"]] == ["spiking->spiking"] * 2 + ["units->units"] * 2
    assert all(len(r["pvar"]) == 3 and all(np.isfinite(r["pvar"])) for r in result["runs"])


SMOKE = {"classification_experiment": smoke_classification_experiment,
         "ablation_experiment": smoke_ablation_experiment,
         "reconstruct_activity": smoke_reconstruct_activity,
         "train_once_run_everywhere": smoke_train_once_run_everywhere,
         "balanced_ei_network": smoke_balanced, "wilson_cowan_network": smoke_wilson_cowan,
         "train_in_own_loop": smoke_train_in_own_loop, "train_randman": smoke_train_randman,
         "train_mnist5k": smoke_train_mnist5k, "reconstruct_teacher": smoke_reconstruct_teacher,
         "train_distributed": smoke_train_distributed}
SLOW = {"train_mnist5k"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(SMOKE)])
def test_example_runs(name, capsys):
    SMOKE[name]()
    assert capsys.readouterr().out
