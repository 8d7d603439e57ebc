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


SMOKE = {"balanced_ei_network": smoke_balanced, "wilson_cowan_network": smoke_wilson_cowan,
         "train_in_own_loop": smoke_train_in_own_loop, "train_randman": smoke_train_randman,
         "train_mnist5k": smoke_train_mnist5k, "reconstruct_teacher": smoke_reconstruct_teacher}
SLOW = {"train_mnist5k"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(SMOKE)])
def test_example_runs(name, capsys):
    SMOKE[name]()
    assert capsys.readouterr().out
