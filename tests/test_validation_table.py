"""Argument validation of every public function, as one table (docs/robustness.md, "Argument validation").

Each row calls one public function with one bad argument and names the
exception class it must raise and fragments its message must contain (the
function or node, the argument, the bad value, what was expected).  The
cases extend tests/test_errors.py (graph structure, constraints, compile
options, module inputs) to the builder's weights and time constants,
``ntgraph.simulate``/``ntgraph.train`` arguments, the encoders, the file
writers and readers, ``estimate_memory`` and half precision.  Rows that
tests/test_errors.py already has are not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ntgraph
from ntgraph import ALIF, LI, LIF, CubaLIF, FileFormatError, Graph, NtgraphError, ShapeError, ValidationError
from ntgraph.errors import BackendNotFoundError
from ntgraph.encoding import latency_encode, lif_current_encode, rate_encode

DT = 1e-3
MISSING = "/nonexistent-ntgraph-folder/sub"


def net() -> Graph:
    """x (4) -> hid (5, LIF) -> out (3, LI); Output y <- out.  Valid."""
    g = Graph("net")
    g.input("x", 4)
    g.population("hid", LIF(tau_mem=20e-3), 5)
    g.population("out", LI(tau_mem=10e-3), 3)
    g.dense("x", "hid")
    g.dense("hid", "out")
    g.output("y", "out")
    return g


def add_pop(model: Any, name: str = "z", size: int = 3) -> Callable[[], Any]:
    return lambda: net().population(name, model, size)


def compile_with(model: Any, **kw: Any) -> Callable[[], Any]:
    def make() -> None:
        g = net()
        g.population("z", model, 3)
        g.dense("x", "z")
        ntgraph.compile(g, "torch", dt=DT, **kw)

    return make


def nan_at(shape: tuple, value: float = np.nan) -> np.ndarray:
    w = np.zeros(shape)
    w.flat[1] = value
    return w


def sim(x: Any, **kw: Any) -> Callable[[], Any]:
    return lambda: ntgraph.simulate(net(), x, **{"dt": DT, **kw})


X = np.zeros((5, 2, 4))


class FakeSplits:
    """Has train/val/test like ntgraph.data.Splits; never reached when an argument is bad."""

    train = val = test = None


def train(**kw: Any) -> Callable[[], Any]:
    return lambda: ntgraph.train(net(), kw.pop("data", FakeSplits()), **{"dt": DT, "progress": False, **kw})


def estimate(**kw: Any) -> Callable[[], Any]:
    return lambda: ntgraph.estimate_memory(kw.pop("graph", net()), **kw)


def nir(fn: str, *args: Any, **kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        nirio = pytest.importorskip("backends.nirio")
        return getattr(nirio, fn)(*args, **kw)

    return call


def onnx_export(path: Any) -> Callable[[], Any]:
    def call() -> Any:
        onnxio = pytest.importorskip("backends.onnxio")
        return onnxio.to_onnx(net(), dt=DT, path=path)

    return call


def checkpoint(path: Any) -> Callable[[], Any]:
    def call() -> Any:
        from backends.torchsim.learning import load_checkpoint

        return load_checkpoint(path)

    return call


def half_trainer() -> None:
    from backends.torchsim.learning import CrossEntropyOverTime, Trainer

    Trainer(ntgraph.compile(net(), "torch", dt=DT, dtype="float16"), CrossEntropyOverTime(output="y"))


@dataclass
class Row:
    id: str
    call: Callable[[], Any]
    exc: type
    parts: list


TABLE = [
    # --- Graph builder: weights -------------------------------------------------------------------------
    Row("dense-weight-nan", lambda: net().dense("x", "out", weight=nan_at((3, 4))), ValidationError,
        ["Dense 'x->out'.weight", "expected finite values", "got nan", "flat index 1"]),
    Row("dense-weight-inf", lambda: net().dense("x", "out", weight=nan_at((3, 4), np.inf)), ValidationError,
        ["'x->out'.weight", "finite", "inf"]),
    Row("dense-bias-nan", lambda: net().dense("x", "out", bias=[0.0, np.nan, 0.0]), ValidationError,
        ["'x->out'.bias", "finite", "nan"]),
    Row("sparse-weight-nan", lambda: net().sparse("x", "out", post_index=[0, 1], pre_index=[0, 1],
                                                  weight=[1.0, np.nan]), ValidationError,
        ["Sparse 'x->out'.weight", "finite", "nan"]),
    Row("one-to-one-weight-inf", lambda: net().one_to_one("hid", "hid", weight=[1, 1, np.inf, 1, 1]), ValidationError,
        ["OneToOne 'hid->hid'.weight", "finite", "inf"]),
    Row("dense-weight-not-numbers", lambda: net().dense("x", "out", weight="abc"), ValidationError,
        ["Dense 'x->out'", "array of numbers", "'abc'"]),
    Row("dense-weight-1d", lambda: net().dense("x", "out", weight=np.zeros(12)), ShapeError,
        ["'x->out'", "2-D", "(n_post, n_pre)", "(12,)"]),
    Row("sparse-index-lengths", lambda: net().sparse("x", "out", post_index=[0, 1], pre_index=[0], weight=[1.0, 1.0]),
        ShapeError, ["Sparse 'x->out'", "equal length", "(2,), (2,), (1,)"]),
    # --- Graph builder: sizes and names -----------------------------------------------------------------
    Row("size-float", lambda: net().input("z", 2.5), ValidationError, ["Input 'z'", "size", "positive integer", "2.5"]),
    Row("size-string", lambda: net().input("z", "3"), ValidationError, ["'z'", "positive integer", "'3'"]),
    Row("size-negative", add_pop(LIF(tau_mem=0.02), size=-3), ValidationError,
        ["Population 'z'", "size", "positive integer", "-3"]),
    Row("duplicate-output", lambda: net().output("y", "hid"), ValidationError, ["'y'", "already exists", "Output"]),
    Row("duplicate-input", lambda: net().input("x", 2), ValidationError, ["'x'", "already exists", "Input"]),
    Row("duplicate-projection-name", lambda: net().dense("x", "out", name="hid->out"), ValidationError,
        ["'hid->out'", "already exists", "Dense"]),
    Row("node-id-not-string", lambda: net().input(3, 4), ValidationError, ["node id", "non-empty string", "got 3"]),
    # --- Graph builder: time constants and parameters (raised by the builder, not at compile time) ------
    Row("tau-negative-builder", add_pop(LIF(tau_mem=-0.02)), ValidationError,
        ["Population 'z'.model.tau_mem (LIF)", "positive finite", "(in s)", "got -0.02"]),
    Row("tau-syn-zero-builder", add_pop(CubaLIF(tau_mem=0.02, tau_syn=0.0)), ValidationError,
        ["'z'.model.tau_syn (CubaLIF)", "positive finite", "got 0"]),
    Row("tau-inf-builder", add_pop(LIF(tau_mem=np.inf)), ValidationError, ["'z'.model.tau_mem", "positive finite", "inf"]),
    Row("tau-one-neuron-bad", add_pop(LIF(tau_mem=np.array([0.02, -0.01, 0.02]))), ValidationError,
        ["'z'.model.tau_mem", "got -0.01", "(neuron 1)"]),
    Row("tau-adapt-nan-builder", add_pop(ALIF(tau_mem=0.02, tau_adapt=np.nan)), ValidationError,
        ["'z'.model.tau_adapt (ALIF)", "nan"]),
    Row("v-th-nan-builder", add_pop(LIF(tau_mem=0.02, v_th=np.nan)), ValidationError,
        ["'z'.model.v_th (LIF)", "expected finite values", "nan"]),
    # --- compile: dt against every time constant, graph, target, dtype -----------------------------------
    Row("dt-above-tau-syn", compile_with(CubaLIF(tau_mem=0.02, tau_syn=0.0005)), ValidationError,
        ["'z'.model.tau_syn (CubaLIF)", "dt=0.001", "0.0005", "expected dt <= tau_syn"]),
    Row("dt-above-tau-adapt", compile_with(ALIF(tau_mem=0.02, tau_adapt=0.0005)), ValidationError,
        ["'z'.model.tau_adapt (ALIF)", "dt=0.001", "expected dt <= tau_adapt"]),
    Row("dt-above-one-neuron-tau", compile_with(LIF(tau_mem=np.array([0.02, 0.02, 0.0002]))), ValidationError,
        ["'z'.model.tau_mem", "0.0002", "(neuron 2)", "expected dt <= tau_mem"]),
    Row("dt-string", lambda: ntgraph.compile(net(), "torch", dt="0.001"), ValidationError,
        ["dt", "positive finite time step in seconds", "'0.001'"]),
    Row("dt-bool", lambda: ntgraph.compile(net(), "torch", dt=True), ValidationError, ["dt", "got True"]),
    Row("graph-none", lambda: ntgraph.compile(None, "torch", dt=DT), ValidationError, ["graph", "Graph", "NoneType"]),
    Row("target-not-a-name", lambda: ntgraph.compile(net(), 3, dt=DT), BackendNotFoundError,
        ["compile target 3", "no such backend", "'torch'"]),
    Row("dtype-integer", lambda: ntgraph.compile(net(), "torch", dt=DT, dtype="int32"), ValidationError,
        ["dtype", "floating torch dtype", "int32"]),
    Row("dtype-unknown", lambda: ntgraph.compile(net(), "torch", dt=DT, dtype="float99"), ValidationError,
        ["dtype", "floating torch dtype", "'float99'"]),
    Row("bfloat16-tau-too-slow", compile_with(LIF(tau_mem=0.1), dtype="bfloat16"), ValidationError,
        ["'z'.model.tau_mem (LIF)", "tau/dt = 100", "bfloat16", "expected tau/dt <= 26"]),
    Row("float16-weight-overflow", lambda: _overflow(), ValidationError,
        ["Dense 'x->hid'.weight", "overflows float16", "65504"]),
    # --- simulate: inputs ---------------------------------------------------------------------------------
    Row("simulate-nan-input", sim(np.where(np.arange(40).reshape(5, 2, 4) == 9, np.nan, 0.0)), ValidationError,
        ["Input 'x'", "expected finite values", "nan", "[t, batch, channel] = (1, 0, 1)"]),
    Row("simulate-inf-input", sim(np.full((5, 2, 4), -np.inf)), ValidationError, ["Input 'x'", "finite", "-inf"]),
    Row("simulate-string-input", sim(np.full((5, 2, 4), "a")), ValidationError,
        ["Input 'x'", "real numbers", "<U1"]),
    Row("simulate-complex-input", sim(np.zeros((5, 2, 4), complex)), ValidationError,
        ["Input 'x'", "real numbers", "complex128"]),
    Row("simulate-object-input", sim(np.full((5, 2, 4), None, dtype=object)), ValidationError,
        ["Input 'x'", "dtype object"]),
    Row("simulate-no-steps", sim(np.zeros((0, 2, 4))), ShapeError, ["Input 'x'", "[T, batch, 4]", "T >= 1", "(0, 2, 4)"]),
    Row("simulate-no-batch", sim(np.zeros((5, 0, 4))), ShapeError, ["Input 'x'", "batch >= 1", "(5, 0, 4)"]),
    Row("simulate-wrong-size", sim(np.zeros((5, 2, 3))), ShapeError, ["Input 'x'", "[T, batch, 4]", "(5, 2, 3)"]),
    Row("simulate-2d", sim(np.zeros((5, 4))), ShapeError, ["Input 'x'", "[T, batch, 4]", "(5, 4)"]),
    Row("simulate-missing-input", sim({}), ValidationError, ["inputs", "['x']", "missing: ['x']"]),
    Row("simulate-unknown-input", sim({"x": X, "u": X}), ValidationError, ["inputs", "unknown: ['u']"]),
    Row("simulate-no-dt", lambda: ntgraph.simulate(net(), X), ValidationError, ["dt", "required"]),
    Row("simulate-export-only-target", sim(X, target="nir"), ValidationError, ["target 'nir'", "cannot simulate"]),
    Row("simulate-record-unknown", sim(X, record="hid.w"), ValidationError, ["'hid.w'", "'hid'", "'w'"]),
    Row("module-string-input", lambda: ntgraph.compile(net(), "torch", dt=DT)([[["a"] * 4] * 2] * 5), ValidationError,
        ["Input 'x'", "array of real numbers"]),
    # --- train ---------------------------------------------------------------------------------------------
    Row("train-epochs-zero", train(epochs=0), ValidationError, ["train epochs", "integer >= 1", "got 0"]),
    Row("train-epochs-float", train(epochs=2.5), ValidationError, ["train epochs", "got 2.5"]),
    Row("train-batch-negative", train(batch_size=-1), ValidationError, ["train batch_size", "integer >= 1", "-1"]),
    Row("train-batch-float", train(batch_size=8.0), ValidationError, ["train batch_size", "8.0"]),
    Row("train-lr-zero", train(lr=0), ValidationError, ["train lr", "finite number > 0", "got 0"]),
    Row("train-lr-nan", train(lr=float("nan")), ValidationError, ["train lr", "nan"]),
    Row("train-lr-string", train(lr="0.01"), ValidationError, ["train lr", "'0.01'"]),
    Row("train-seed-negative", train(seed=-1), ValidationError, ["train seed", "integer >= 0", "-1"]),
    Row("train-task", train(task="ranking"), ValidationError, ["train task", "'classification'", "'ranking'"]),
    Row("train-algorithm-type", train(algorithm=3), ValidationError, ["train algorithm", "'tbptt:K'", "got 3"]),
    Row("train-data-none", train(data=None), ValidationError, ["train data", "Splits", "NoneType", "no train, val, test"]),
    Row("train-output-unknown", train(output="zz"), ValidationError, ["train output", "['y']", "'zz'"]),
    Row("train-no-dt", lambda: ntgraph.train(net(), FakeSplits()), ValidationError, ["train option dt", "required"]),
    Row("trainer-half-precision", half_trainer, ValidationError, ["Trainer model", "float16", "float32"]),
    # --- encoders --------------------------------------------------------------------------------------------
    Row("rate-x-not-numbers", lambda: rate_encode("abc", 5, max_rate_hz=100, dt=DT), ValidationError,
        ["rate_encode x", "array of real numbers", "'abc'"]),
    Row("rate-dtype", lambda: rate_encode([0.5], 5, max_rate_hz=100, dt=DT, dtype="foo"), ValidationError,
        ["rate_encode dtype", "numeric numpy dtype", "'foo'"]),
    Row("rate-steps-float", lambda: rate_encode([0.5], 2.5, max_rate_hz=100, dt=DT), ValidationError,
        ["rate_encode steps", "integer >= 1", "2.5"]),
    Row("rate-probability-above-1", lambda: rate_encode([0.5], 5, max_rate_hz=2000, dt=DT), ValidationError,
        ["rate_encode", "max_rate_hz * dt", "> 1", "method='poisson'"]),
    Row("latency-x-nan", lambda: latency_encode([0.5, np.nan], 5, tau=0.02, dt=DT), ValidationError,
        ["latency_encode x", "[0, 1]", "nan", "flat index 1"]),
    Row("latency-x-not-numbers", lambda: latency_encode(["a"], 5, tau=0.02, dt=DT), ValidationError,
        ["latency_encode x", "real numbers"]),
    Row("lif-encode-x-not-numbers", lambda: lif_current_encode("x", 5, dt=DT, tau_mem=0.02), ValidationError,
        ["lif_current_encode x", "real numbers"]),
    Row("lif-encode-tau-zero", lambda: lif_current_encode([0.5], 5, dt=DT, tau_mem=0.0), ValidationError,
        ["lif_current_encode tau_mem", "positive", "0.0"]),
    Row("lif-encode-dt-above-tau", lambda: lif_current_encode([0.5], 5, dt=0.1, tau_mem=0.01), ValidationError,
        ["lif_current_encode dt", "0.1", "expected dt <= tau_mem"]),
    # --- files: writers and readers --------------------------------------------------------------------------
    Row("save-missing-folder", lambda: ntgraph.save(net(), f"{MISSING}/g.ntg"), ValidationError,
        ["ntgraph.io.save path", MISSING, "does not exist"]),
    Row("save-to-folder", lambda: ntgraph.save(net(), Path.cwd()), ValidationError,
        ["ntgraph.io.save path", "is a folder"]),
    Row("save-path-int", lambda: ntgraph.save(net(), 3), ValidationError, ["ntgraph.io.save path", "os.PathLike", "int"]),
    Row("save-not-a-graph", lambda: ntgraph.save({"x": 1}, "g.ntg"), ValidationError,
        ["ntgraph.io.save graph", "expected a Graph", "dict"]),
    Row("load-none", lambda: ntgraph.load(None), ValidationError, ["ntgraph.io.load path", "NoneType"]),
    Row("load-missing-file", lambda: ntgraph.load(f"{MISSING}/g.ntg"), FileFormatError, [MISSING, "does not exist"]),
    Row("nir-export-missing-folder", nir("to_nir", net(), dt=DT, path=f"{MISSING}/g.nir"), ValidationError,
        ["NIR export path", "does not exist"]),
    Row("nir-import-none", nir("from_nir", None), ValidationError, ["from_nir path", "NoneType"]),
    Row("nir-import-missing", nir("from_nir", f"{MISSING}/g.nir"), FileFormatError, [MISSING, "does not exist"]),
    Row("onnx-export-to-folder", onnx_export(Path.cwd()), ValidationError, ["ONNX export path", "is a folder"]),
    Row("checkpoint-path-none", checkpoint(None), ValidationError, ["load_checkpoint path", "NoneType"]),
    Row("checkpoint-missing", checkpoint(f"{MISSING}/last.pt"), FileFormatError, ["checkpoint", MISSING, "no such file"]),
    # --- estimate_memory --------------------------------------------------------------------------------------
    Row("estimate-batch-zero", estimate(batch=0), ValidationError, ["estimate_memory batch", "integer >= 1", "got 0"]),
    Row("estimate-steps-float", estimate(steps=10.5), ValidationError, ["estimate_memory steps", "10.5"]),
    Row("estimate-mode", estimate(mode="forward"), ValidationError,
        ["estimate_memory mode", "'inference', 'bptt', 'tbptt', 'eprop'", "'forward'"]),
    Row("estimate-tbptt-no-window", estimate(mode="tbptt"), ValidationError, ["estimate_memory window", "None"]),
    Row("estimate-window-with-bptt", estimate(mode="bptt", window=10), ValidationError,
        ["estimate_memory window", "only mode='tbptt'", "mode='bptt'"]),
    Row("estimate-optimizer", estimate(mode="bptt", optimizer="rmsprop"), ValidationError,
        ["estimate_memory optimizer", "'adam'", "'rmsprop'"]),
    Row("estimate-dtype", estimate(dtype="int8"), ValidationError, ["estimate_memory dtype", "'float32'", "'int8'"]),
    Row("estimate-record", estimate(record=["nope"]), ValidationError, ["estimate_memory record 'nope'", "hid, out"]),
    Row("estimate-backend-unknown", estimate(backend="loihi9"), BackendNotFoundError, ["'loihi9'", "no such backend"]),
    Row("estimate-backend-without", estimate(backend="nir"), ValidationError,
        ["estimate_memory backend 'nir'", "no memory estimator"]),
    Row("estimate-empty-graph", estimate(graph=Graph("void")), ValidationError, ["'void'", "empty"]),
    Row("estimate-dt-above-tau", estimate(dt=0.05), ValidationError, ["'hid'.model.tau_mem", "dt=0.05", "expected dt <="]),
    Row("estimate-backend-option", estimate(colour="red"), ValidationError, ["torch backend", "'colour'"]),
]


def _overflow() -> None:
    g2 = Graph("o")
    g2.input("x", 4)
    g2.population("hid", LIF(tau_mem=0.02), 5)
    g2.dense("x", "hid", weight=np.full((5, 4), 1e5))
    g2.output("y", "hid")
    ntgraph.compile(g2, "torch", dt=DT, dtype="float16")


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in TABLE])
def test_bad_argument_gives_clear_error(row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # rows that would write do so in an empty folder
    with pytest.raises(NtgraphError) as info:
        row.call()
    err = info.value
    assert type(err) is row.exc, f"{row.id}: expected {row.exc.__name__}, got {type(err).__name__}: {err}"
    missing = [p for p in row.parts if p not in str(err)]
    assert not missing, f"{row.id}: message lacks {missing}: {str(err)!r}"
    assert list(tmp_path.iterdir()) == [], f"{row.id}: left files behind"


def test_row_ids_are_unique_and_not_in_test_errors() -> None:
    ids = [r.id for r in TABLE]
    assert len(ids) == len(set(ids))
    from test_errors import CASES

    assert not set(ids) & {c.id for c in CASES}


def test_rejected_builder_call_leaves_the_graph_unchanged() -> None:
    g = net()
    before = g.copy()
    for row in ("dense-weight-nan", "tau-negative-builder"):
        with pytest.raises(ValidationError):
            if row == "dense-weight-nan":
                g.dense("x", "out", weight=nan_at((3, 4)))
            else:
                g.population("z", LIF(tau_mem=-0.02), 3)
    assert g == before


def test_valid_calls_of_the_same_functions_pass(tmp_path: Path) -> None:
    """The table's functions accept good arguments (so the rows test the bad argument, not a broken call)."""
    g = net()
    out = ntgraph.simulate(g, X, dt=DT, record="hid.v")
    assert out["y"].shape == (5, 2, 3) and out["hid.v"].shape == (5, 2, 5)
    assert ntgraph.save(g, tmp_path / "g.ntg").exists()
    assert ntgraph.load(tmp_path / "g.ntg") == g
    assert rate_encode([0.5], 5, max_rate_hz=100, dt=DT).shape == (5, 1)
    assert ntgraph.estimate_memory(g, batch=2, steps=5, mode="tbptt", window=2, optimizer="adam").total > 0
