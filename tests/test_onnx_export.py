"""The ONNX export as a file: validity, names, metadata, folded constants, errors, the CLI and atomic writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

import ntgraph as ntg
from backends.onnxio import LOWERINGS, OnnxBackend, OnnxRunner, run_onnx, to_onnx
from backends.onnxio.builder import ModelContext
from ntgraph._data import frozen_array, param
from ntgraph.cli import main
from ntgraph.constraints import project_weights, resolve
from ntgraph.errors import FileFormatError, ShapeError, UnsupportedNodeError, ValidationError

DT = 1e-3


def net() -> ntg.Graph:
    """Two inputs (one delayed), Dale's law, a masked recurrent LIF layer, an ALIF layer, an LI readout."""
    g = ntg.Graph("net", seed=3)
    g.input("x", 4, excitatory=0.5)
    g.input("cue", 2)
    g.population("hid", ntg.LIF(tau_mem=np.linspace(4e-3, 9e-3, 6), v_th=0.6, reset="subtract"), 6, excitatory=0.5)
    g.dense("x", "hid", scale=1.5, bounds=(-1.0, 1.0))
    g.dense("cue", "hid", scale=1.0, delay=2, bias=np.full(6, 0.1))
    g.dense("hid", "hid", p=0.5, no_self=True, scale=0.8)
    g.population("adapt", ntg.ALIF(tau_mem=5e-3, tau_adapt=30e-3, beta=0.3, v_th=0.4), 3)
    g.sparse("hid", "adapt", p=0.7, scale=1.5)
    g.population("out", ntg.LI(tau_mem=6e-3), 2)
    g.dense("adapt", "out", scale=1.0)
    g.output("y", "out")
    g.output("spikes", "hid")
    return g


def inputs(steps: int = 20, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0.0, 1.5, (steps, batch, 4)), "cue": (rng.random((steps, batch, 2)) < 0.3).astype(float)}


def torch_results(g: ntg.Graph, xs: dict, record=(), **opts: Any) -> dict[str, np.ndarray]:
    m = ntg.compile(g, "torch", dt=DT, record=list(record), dtype=torch.float64, **opts)
    with torch.no_grad():
        res = m(xs)
    return {k: res[k].numpy() for k in [*g.outputs, *record]}


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes of a graph and of its subgraphs (the Scan body)."""
    nodes = []
    for n in graph.node:
        nodes.append(n)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                nodes += all_nodes(a.g)
    return nodes


# ----------------------------------------------------------------------------- validity and readability
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checker_and_strict_shape_inference_pass(mode, dtype):
    model = to_onnx(net(), dt=DT, mode=mode, dtype=dtype, record=["hid.v", "adapt.a"])
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    lead = ["time", "batch"] if mode == "sequence" else ["batch"]
    for v in inferred.graph.output:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        assert v.type.tensor_type.elem_type == elem, v.name
        if not v.name.startswith(("state.", "delay.")):
            assert dims[:-1] == lead and isinstance(dims[-1], int), (v.name, dims)
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import))
    used = {i for n in all_nodes(model.graph) for i in n.input}
    assert [t.name for t in model.graph.initializer if t.name not in used] == []  # no dead weights


def test_dead_code_is_pruned_and_pass_through_graphs_export():
    """Nodes no output, record or state depends on are dropped; a graph of only Inputs -> Outputs needs no loop."""
    g = ntg.Graph("through")
    g.input("x", 2)
    g.population("p", ntg.RateUnit(tau=None), 2)
    g.dense("x", "p")
    g.population("q", ntg.LIF(tau_mem=5e-3), 2)
    g.dense("p", "q")
    g.output("y", "x")
    x = np.random.default_rng(0).normal(size=(4, 3, 2))
    seq = to_onnx(g, dt=DT, mode="sequence")
    assert [n.op_type for n in seq.graph.node] == ["Identity"] and len(seq.graph.initializer) == 0
    step = to_onnx(g, dt=DT, mode="step")  # q's state stays part of the step interface
    assert [v.name for v in step.graph.output] == ["y", "state.q.v.next"]
    assert "Cast" not in {n.op_type for n in step.graph.node}  # q's spikes feed nothing
    for model in (seq, step):
        onnx.checker.check_model(model, full_check=True)
        np.testing.assert_array_equal(run_onnx(model, x)["y"], x.astype(np.float32))


def test_step_mode_state_interface_names_and_shapes():
    model = to_onnx(net(), dt=DT, timing="pipelined", mode="step", record=["hid.v"])
    ins = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    outs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
    assert ins == {
        "x": ["batch", 4], "cue": ["batch", 2],
        "state.hid.v": ["batch", 6], "state.adapt.v": ["batch", 3], "state.adapt.a": ["batch", 3],
        "state.out.v": ["batch", 2],
        # pipelined: every hop one step more, so x and adapt get delay lines; cue's is 3 long, hid's 2 (recurrent)
        "delay.x": [1, "batch", 4], "delay.cue": [3, "batch", 2], "delay.hid": [2, "batch", 6],
        "delay.adapt": [1, "batch", 3],
    }
    assert list(outs)[:3] == ["y", "spikes", "hid.v"]
    for name, dims in ins.items():
        if name.startswith(("state.", "delay.")):
            assert outs[name + ".next"] == dims
    assert len(outs) == 3 + len([n for n in ins if n.startswith(("state.", "delay."))])


def test_names_are_sanitised_and_readable():
    g = ntg.Graph("odd names")
    g.input("in put", 2)
    g.population("a->b", ntg.LIF(tau_mem=5e-3), 3)
    g.dense("in put", "a->b")
    g.dense("in put", "a->b", scale=0.5)  # a second projection between the same nodes: id "in put->a->b#2"
    g.output("y:out", "a->b")
    model = to_onnx(g, dt=DT, mode="sequence", record=["a->b.v"])
    names = [v.name for v in model.graph.input] + [v.name for v in model.graph.output]
    assert names == ["in_put", "y_out", "a_to_b.v"]
    weights = {t.name for t in model.graph.initializer}
    assert {"in_put_to_a_to_b.weight", "in_put_to_a_to_b_2.weight", "a_to_b.decay_mem", "a_to_b.v_th"} <= weights
    every = [*weights, *(o for n in all_nodes(model.graph) for o in n.output),
             *(n.name.replace("/", "") for n in all_nodes(model.graph))]
    assert all(ch.isalnum() or ch in "_." for name in every for ch in name), every
    scan = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scan) == 1 and scan[0].name == "time_loop/Scan"
    runner = OnnxRunner(model)
    assert runner.keys == ["y:out", "a->b.v"]  # results keep the ntgraph ids
    out = runner.run({"in put": np.ones((5, 2, 2))})
    ref = torch_results(g, {"in put": np.ones((5, 2, 2))}, record=["a->b.v"])
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_metadata(mode):
    model = to_onnx(net(), dt=5e-4, mode=mode, discretization="exact", timing="pipelined", dtype="float64",
                    record=["hid.v"])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dt"] == "0.0005" and float(meta["dt"]) == 5e-4
    assert meta["discretization"] == "exact" and meta["timing"] == "pipelined" and meta["mode"] == mode
    assert meta["ntgraph_version"] == ntg.__version__ and meta["dtype"] == "float64" and meta["graph_name"] == "net"
    interface = json.loads(meta["ntgraph_interface"])
    assert [e["id"] for e in interface["inputs"]] == ["x", "cue"]
    assert [(e["id"], e["source"], e["var"]) for e in interface["outputs"]] == [("y", "out", "v"), ("spikes", "hid", "spikes")]
    assert [e["key"] for e in interface["records"]] == ["hid.v"]
    assert interface["state_io"] == (mode == "step")
    if mode == "step":
        init = {s["name"]: s["initial"] for s in interface["state"]}
        assert init["state.adapt.a"] == 0.0 and init["delay.hid"] == 0.0
    assert model.producer_name == "ntgraph" and "docs/onnx.md" in model.doc_string


def test_initial_state_of_every_model_comes_from_the_metadata():
    g = ntg.Graph("init")
    g.input("x", 2)
    g.population("lif", ntg.LIF(tau_mem=5e-3, v_leak=[0.1, -0.2]), 2)
    g.population("if", ntg.IF(v_reset=-0.3), 2)
    g.population("cuba", ntg.CubaLIF(tau_syn=2e-3, tau_mem=5e-3, v_leak=0.25), 2)
    for p in ("lif", "if", "cuba"):
        g.dense("x", p)
    g.output("y", "cuba")
    runner = OnnxRunner(to_onnx(g, dt=DT, mode="step"))
    state = runner.initial_state(3)
    np.testing.assert_array_equal(state["state.lif.v"], np.tile(np.float32([0.1, -0.2]), (3, 1)))
    np.testing.assert_array_equal(state["state.if.v"], np.full((3, 2), np.float32(-0.3)))
    np.testing.assert_array_equal(state["state.cuba.i"], np.zeros((3, 2)))
    np.testing.assert_array_equal(state["state.cuba.v"], np.full((3, 2), 0.25))


def test_sequence_model_size_does_not_depend_on_T():
    """One Scan, no node per step: the same model runs 3 and 400 steps, and matches torch for both."""
    g = net()
    model = to_onnx(g, dt=DT, mode="sequence")
    assert sum(n.op_type == "Scan" for n in model.graph.node) == 1
    assert all(n.op_type != "Loop" for n in all_nodes(model.graph))
    size = model.ByteSize()
    runner = OnnxRunner(model)
    for steps in (3, 400):
        xs = inputs(steps, 2)
        got, ref = runner.run(xs), torch_results(g, xs)
        np.testing.assert_array_equal(got["spikes"], ref["spikes"])
        np.testing.assert_allclose(got["y"], ref["y"], rtol=0, atol=1e-5)
    assert to_onnx(g, dt=DT, mode="sequence").ByteSize() == size


def test_spikes_are_a_comparison_cast_to_float():
    """Each spiking population has one Greater -> Cast(float) and no smooth nonlinearity."""
    model = to_onnx(net(), dt=DT, mode="step")
    nodes = all_nodes(model.graph)
    greater = [n for n in nodes if n.op_type == "Greater"]
    assert sorted(n.name.split("/")[0] for n in greater) == ["adapt", "hid"]
    for n in greater:
        casts = [c for c in nodes if c.op_type == "Cast" and n.output[0] in c.input]
        assert len(casts) == 1 and casts[0].attribute[0].i == onnx.TensorProto.FLOAT
    assert not any(n.op_type in ("Sigmoid", "Tanh", "Relu", "Sign") for n in nodes)


# ----------------------------------------------------------------------------- folded constants
def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


def test_constraints_are_folded_into_the_effective_weights():
    g = net()
    prepared = ntg.compiler.prepare(g, ntg.CompileOptions(dt=DT))
    model = to_onnx(g, dt=DT, dtype="float64")
    init = initializers(model)
    for proj in ("x->hid", "hid->hid"):
        rc = prepared.meta(proj)["constraints"]
        expected = project_weights(np.asarray(g[proj].weight), rc)
        np.testing.assert_array_equal(init[proj.replace("->", "_to_") + ".weight"], expected.T)
    w = init["hid_to_hid.weight"].T
    assert np.all(np.diag(w) == 0) and np.all(w[~prepared.meta("hid->hid")["constraints"].mask] == 0)
    sign = g["hid"].dale.sign
    assert np.all(w * sign[None, :] >= 0)  # Dale's law: column j has the sign of presynaptic neuron j
    x_w = init["x_to_hid.weight"]
    assert x_w.min() >= -1.0 and x_w.max() <= 1.0
    sparse = g["hid->adapt"]
    dense = np.zeros((3, 6))
    np.add.at(dense, (sparse.post_index, sparse.pre_index), project_weights(np.asarray(sparse.weight),
                                                                            resolve("hid->adapt", sparse, g["hid"].dale, False)))
    np.testing.assert_array_equal(init["hid_to_adapt.weight"], dense.T)


def test_weights_outside_the_constraints_are_projected():
    """The lowering folds the constraint map itself: a weight that breaks Dale's law is exported as its projection."""
    g = ntg.Graph("folded")
    g.input("x", 2, excitatory=[1, -1])
    g.population("p", ntg.LI(tau_mem=5e-3), 2)
    g.dense("x", "p", weight=[[0.5, -0.5], [1.0, -2.0]])
    g.output("y", "p")
    prepared = ntg.compiler.prepare(g, ntg.CompileOptions(dt=DT))
    bad = prepared["x->p"].replace(weight=np.array([[-0.5, 0.5], [1.0, -2.0]]))  # column 0 must be >= 0, column 1 <= 0
    cls = LOWERINGS.lookup(bad, "x->p")
    lowering = cls(ModelContext("float64", 17), "x->p", "x_to_p", bad, prepared.meta("x->p")["constraints"])
    np.testing.assert_array_equal(lowering.weight, [[0.5, -0.5], [1.0, -2.0]])


@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_decays_are_computed_in_float64_then_cast(disc):
    tau = np.array([1e-3, 3e-3, 7e-3, 2e-2])
    g = ntg.Graph("decays")
    g.input("x", 4)
    g.population("cuba", ntg.CubaLIF(tau_syn=tau[::-1].copy(), tau_mem=tau, w_in=[1.0, 2.0, 0.5, 3.0]), 4)
    g.population("alif", ntg.ALIF(tau_mem=tau, tau_adapt=tau * 10), 4)
    g.population("if", ntg.IF(r=np.array([100.0, 250.0, 300.0, 1000.0])), 4)
    g.population("wc", ntg.WilsonCowan(tau=tau), 4)
    for p in ("cuba", "alif", "if", "wc"):
        g.dense("x", p)
    g.output("y", "wc")
    for dtype, np_dtype in (("float32", np.float32), ("float64", np.float64)):
        init = initializers(to_onnx(g, dt=DT, discretization=disc, dtype=dtype))
        a = 1.0 - DT / tau if disc == "euler" else np.exp(-DT / tau)
        b = 1.0 - DT / tau[::-1] if disc == "euler" else np.exp(-DT / tau[::-1])
        rho = 1.0 - DT / (tau * 10) if disc == "euler" else np.exp(-DT / (tau * 10))
        expected = {
            "cuba.decay_mem": a, "cuba.gain_mem": 1.0 - a, "cuba.decay_syn": b,
            "cuba.gain_syn": (1.0 - b) * np.array([1.0, 2.0, 0.5, 3.0]),
            "alif.decay_mem": a, "alif.decay_adapt": rho, "if.dt_r": DT * np.array([100.0, 250.0, 300.0, 1000.0]),
        }
        if disc == "euler":
            expected["wc.dt_over_tau"] = DT / tau
        else:
            expected["wc.tau"] = tau
        for name, values in expected.items():
            assert init[name].dtype == np_dtype, name
            np.testing.assert_array_equal(init[name], values.astype(np_dtype), err_msg=name)


# ----------------------------------------------------------------------------- errors

@dataclass(frozen=True, eq=False, kw_only=True)
class Conv(ntg.Projection):
    """A projection type no backend lowers."""

    weight: Any

    def __post_init__(self) -> None:
        self._set("weight", frozen_array(self.weight))
        super().__post_init__()

    @property
    def n_post(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[0])

    @property
    def n_pre(self) -> int:  # type: ignore[override]
        return int(self.weight.shape[1])

    def synapse_index(self):  # type: ignore[no-untyped-def]
        return np.indices(self.weight.shape)


@dataclass(frozen=True, eq=False)
class Izhikevich(ntg.NeuronModel):
    """A neuron model no backend lowers."""

    tau: Any = param(20e-3, unit="s", positive=True)
    output_var = "v"
    state_vars = ("v",)


def test_unsupported_projection_names_the_node_and_type():
    g = net()
    g.add("conv", Conv(weight=np.zeros((6, 4))), source="x", target="hid")
    with pytest.raises(UnsupportedNodeError, match=r"backend 'onnx': node 'conv' has type Conv.*supported:.*Dense"):
        to_onnx(g, dt=DT)


def test_unsupported_neuron_model_names_the_node_and_model():
    g = ntg.Graph("izh")
    g.input("x", 3)
    g.population("izh", Izhikevich(), 3)
    g.dense("x", "izh")
    g.output("y", "izh")
    with pytest.raises(UnsupportedNodeError, match=r"node 'izh' has type Izhikevich.*supported:.*LIF") as info:
        to_onnx(g, dt=DT, mode="sequence")
    assert isinstance(info.value, TypeError)


def test_subclass_of_a_supported_model_lowers_like_its_parent():
    @dataclass(frozen=True, eq=False)
    class MyLIF(ntg.LIF):
        pass

    g = ntg.Graph("sub")
    g.input("x", 2)
    g.population("p", MyLIF(tau_mem=5e-3, v_th=0.3), 2)
    g.dense("x", "p", weight=np.eye(2))
    g.output("y", "p")
    xs = {"x": np.random.default_rng(0).uniform(0, 1, (10, 1, 2))}
    np.testing.assert_array_equal(run_onnx(to_onnx(g, dt=DT), xs)["y"], torch_results(g, xs)["y"])


@pytest.mark.parametrize("options, words", [
    ({"mode": "unrolled"}, ["mode", "'step', 'sequence'", "'unrolled'"]),
    ({"dtype": "float16"}, ["dtype", "'float32' or 'float64'", "'float16'"]),
    ({"opset": 11}, ["opset", "from 13", "11"]),
    ({"opset": 10**4}, ["opset", "10000"]),
    ({"sparse": "csr"}, ["sparse", "'dense', 'scatter'", "'csr'"]),
    ({"sparse": "scatter", "opset": 15}, ["scatter", "opset >= 16", "15"]),
    ({"record": ["nope.v"]}, ["record 'nope.v'", "populations: hid, adapt, out"]),
    ({"record": ["hid.a"]}, ["record 'hid.a'", "'hid' (LIF)", "no variable 'a'", "spikes, v"]),
    ({"state_io": "yes"}, ["state_io", "True or False", "'yes'"]),
])
def test_bad_options_name_the_option(options, words):
    with pytest.raises(ValidationError) as info:
        to_onnx(net(), dt=DT, **options)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_unknown_backend_option_and_compile_entry_point():
    with pytest.raises(ValidationError, match=r"onnx backend: unknown option\(s\) \['modus'\]"):
        ntg.compile(net(), "onnx", dt=DT, modus="step")
    model = ntg.compile(net(), "onnx", dt=DT, mode="sequence", dtype=np.float64)
    assert isinstance(model, onnx.ModelProto) and {p.key: p.value for p in model.metadata_props}["dtype"] == "float64"
    assert OnnxBackend.name == "onnx" and ntg.registry.get_backend("onnx").name == "onnx"


def test_graph_errors_come_from_validation():
    g = ntg.Graph("no-input")
    g.population("p", ntg.LIF(tau_mem=5e-3), 2)
    g.output("y", "p")
    with pytest.raises(ValidationError, match="'no-input': has no Input"):
        to_onnx(g, dt=DT)
    with pytest.raises(ValidationError, match="dt=0.01 s is larger than the time constant"):
        to_onnx(net(), dt=1e-2)


def test_runner_errors():
    model = to_onnx(net(), dt=DT, mode="sequence")
    runner = OnnxRunner(model)
    with pytest.raises(ShapeError, match=r"Input 'x': expected an array of shape \[T, batch, 4\], got shape \(5, 2, 3\)"):
        runner.run({"x": np.zeros((5, 2, 3)), "cue": np.zeros((5, 2, 2))})
    with pytest.raises(ShapeError, match="leading shape"):
        runner.run({"x": np.zeros((5, 2, 4)), "cue": np.zeros((6, 2, 2))})
    with pytest.raises(ValidationError, match=r"missing: \['cue'\]"):
        runner.run({"x": np.zeros((5, 2, 4))})
    with pytest.raises(ValidationError, match="state_io=True"):
        runner.run(inputs(), return_state=True)
    with pytest.raises(ShapeError, match="at least one time step, got T=0"):
        runner.run(inputs(0, 2))
    with pytest.raises(ValidationError, match="use run"):
        runner.step({"x": np.zeros((2, 4)), "cue": np.zeros((2, 2))}, {})
    stepper = OnnxRunner(to_onnx(net(), dt=DT, mode="step"))
    with pytest.raises(ShapeError, match=r"state 'state.hid.v': expected shape \(3, 6\), got \(2, 6\)"):
        stepper.run(inputs(batch=3), state=stepper.initial_state(2))
    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["a"], ["b"])], "g",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])]))
    with pytest.raises(FileFormatError, match="not an ntgraph export"):
        OnnxRunner(plain)


def test_truncated_or_missing_file(tmp_path: Path):
    path = tmp_path / "m.onnx"
    to_onnx(net(), path, dt=DT)
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="cut.onnx: onnxruntime cannot load it"):
        OnnxRunner(tmp_path / "cut.onnx")
    with pytest.raises(FileFormatError, match="missing.onnx: does not exist"):
        run_onnx(tmp_path / "missing.onnx", inputs())


# ----------------------------------------------------------------------------- files, CLI, simulate
def test_to_onnx_writes_atomically(tmp_path: Path):
    path = tmp_path / "net.onnx"
    model = to_onnx(net(), path, dt=DT, mode="sequence")
    assert onnx.load(path) == model
    with pytest.raises(ValidationError):
        to_onnx(net(), path, dt=DT, mode="bogus")
    assert onnx.load(path) == model  # a failed export leaves the old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # and no temporary file


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_cli_export(tmp_path: Path, mode, capsys):
    g = net()
    src = ntg.save(g, tmp_path / "net.ntg")
    out = tmp_path / f"{mode}.onnx"
    code = main(["export", str(src), "--format", "onnx", "--dt", "1e-3", "--timing", "pipelined", "--out", str(out),
                 "--set", f"mode={mode}", "--set", "dtype=float64", "--set", "record=['hid.v']"])
    assert code == 0 and f"to {out}" in capsys.readouterr().out
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["mode"], meta["timing"], meta["dtype"]) == (mode, "pipelined", "float64")
    xs = inputs(15, 2)
    got, ref = run_onnx(out, xs), torch_results(g, xs, record=["hid.v"], timing="pipelined")
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-10, err_msg=k)


def test_cli_export_bad_option_fails_cleanly(tmp_path: Path, capsys):
    src = ntg.save(net(), tmp_path / "net.ntg")
    code = main(["export", str(src), "--format", "onnx", "--dt", "1e-3", "--out", str(tmp_path / "m.onnx"),
                 "--set", "mode=loop"])
    assert code == 2 and "error: onnx backend option mode" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_simulate_and_cli_run_on_onnxruntime(tmp_path: Path):
    g = net()
    xs = inputs(12, 2)
    got = ntg.simulate(g, xs, target="onnx", dt=DT, record=["adapt.a"], dtype="float64")
    ref = torch_results(g, xs, record=["adapt.a"])
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == np.float64
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-10, err_msg=k)
    for name, x in xs.items():
        np.save(tmp_path / f"{name}.npy", x)
    src = ntg.save(g, tmp_path / "net.ntg")
    assert main(["run", str(src), "--target", "onnx", "--input", f"x={tmp_path / 'x.npy'}",
                 "--input", f"cue={tmp_path / 'cue.npy'}", "--dt", "1e-3", "--out", str(tmp_path / "r.npz")]) == 0
    with np.load(tmp_path / "r.npz") as r:
        np.testing.assert_array_equal(r["spikes"], ref["spikes"])
        np.testing.assert_allclose(r["y"], ref["y"], rtol=0, atol=1e-5)
