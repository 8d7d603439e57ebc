"""ntgraph -> NIR -> ntgraph: exact round trips, the file's NIR conventions, and export errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import hypothesis.strategies as st
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

import ntgraph as ntg
from backends.nirio import NirBackend, NirExportWarning, NirImportWarning, from_nir, to_nir
from ntgraph.errors import CycleError, FileFormatError, UnsupportedNodeError, ValidationError

DT = 1e-3


def exportable_graph() -> ntg.Graph:
    """Every model NIR can carry, every constraint, every projection kind, delays and cycles."""
    g = ntg.Graph("every-exportable/class", seed=3)
    x = g.input("x", 6, excitatory=0.5)
    u = g.input("u", 3)
    lif = g.population("lif", ntg.LIF(tau_mem=np.linspace(5e-3, 2e-2, 4), v_th=[1.0, 1.1, 0.9, 1.2],
                                      v_leak=0.1, v_reset=-0.2, r=2.0), 4, excitatory=[1, 1, -1, -1],
                       learnable=("tau_mem", "v_th"))
    sub = g.population("lif/sub", ntg.LIF(tau_mem=1e-2, reset="subtract"), 5)
    cuba = g.population("cuba", ntg.CubaLIF(tau_syn=5e-3, tau_mem=np.linspace(1e-2, 5e-2, 5), w_in=1.5), 5)
    alif = g.population("alif", ntg.ALIF(tau_mem=2e-2, tau_adapt=np.full(3, 0.2), beta=0.5), 3)
    if_ = g.population("if", ntg.IF(r=1e3, v_reset=-0.1), 2)
    li = g.population("li", ntg.LI(tau_mem=1e-2, v_leak=np.array([0.0, 0.5])), 2)
    g.dense(x, lif, bias=np.arange(4.0), scale=2.0)
    g.dense(lif, lif, p=0.5, no_self=True, bounds=(-np.inf, 0.5))
    g.dense(u, cuba, sign=np.array([[1, 0, -1]] * 5), bounds=(-2.0, 2.0), scale=3.0)
    g.dense(u, li, mask=np.array([[True, False, True], [False, True, True]]), delay=3)
    g.dense(x, alif, balanced=True, scale=2.0)
    g.dense(x, if_, balanced=np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0]), name="x->if balanced")
    g.sparse(alif, li, p=0.6, delay=2)
    g.sparse(u, if_, post_index=[0, 1, 1, 1], pre_index=[2, 1, 0, 0], weight=[0.5, -1.0, 2.0, 0.25], bounds=(-1.0, np.inf))
    g.one_to_one(cuba, sub, weight=np.linspace(0.5, 1.5, 5))
    g.dense(sub, cuba, delay=1)
    g.dense(sub, cuba, delay=4, name="sub->cuba slow", learnable=())
    g.output("y_lif", lif)
    g.output("y_li", li)
    g.output("y_if", if_)
    g.output("echo", u)
    return g


def inputs(graph: ntg.Graph, steps: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: (rng.random((steps, 2, graph[i].size)) < 0.4) * 2.0 for i in graph.inputs}


def export_quietly(graph: ntg.Graph, path=None, **kw) -> nir.NIRGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        return to_nir(graph, path, dt=kw.pop("dt", DT), **kw)


def run(graph: ntg.Graph, x: dict, **kw) -> dict[str, np.ndarray]:
    import torch

    record = [f"{p}.{v}" for p in graph.populations for v in graph[p].model.recordable]
    return ntg.simulate(graph, x, dt=kw.pop("dt", DT), record=record, dtype=torch.float64, **kw)


# ------------------------------------------------------------------ exact round trips
def test_round_trip_gives_an_identical_graph_and_identical_outputs(tmp_path: Path):
    g = exportable_graph()
    export_quietly(g, tmp_path / "net.nir")
    back = from_nir(tmp_path / "net.nir")
    assert back == g and back.seed == g.seed and back.name == g.name
    a, b = run(g, inputs(g)), run(back, inputs(g))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert a["lif.spikes"].sum() > 0 and a["if.spikes"].sum() > 0  # the network is not silent


@pytest.mark.parametrize("one_to_one", ["scale", "linear"])
@pytest.mark.parametrize("timing,discretization", [("sync", "euler"), ("pipelined", "exact")])
def test_round_trip_under_every_option(tmp_path: Path, one_to_one: str, timing: str, discretization: str):
    g = exportable_graph()
    ng = export_quietly(g, tmp_path / "net.nir", one_to_one=one_to_one, timing=timing, discretization=discretization)
    kinds = {type(n).__name__ for n in ng.nodes.values()}
    assert ("Scale" in kinds) == (one_to_one == "scale")
    back = from_nir(tmp_path / "net.nir")
    assert back == g
    assert back.attrs["nir"] == {"dialect": "ntgraph", "dt": DT, "discretization": discretization, "timing": timing}


def test_in_memory_graph_round_trips_without_a_file():
    g = exportable_graph()
    assert from_nir(export_quietly(g)) == g


def test_file_follows_nir_conventions_and_passes_the_default_type_check(tmp_path: Path):
    g = exportable_graph()
    export_quietly(g, tmp_path / "net.nir")
    ng = nir.read(tmp_path / "net.nir")  # default type_check=True
    for key, node in ng.nodes.items():
        if isinstance(node, nir.Input):
            assert list(node.input_type["input"]) == [g[key].size]  # no batch dimension
        for field in ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
            if hasattr(node, field):
                value = getattr(node, field)
                assert value.dtype == np.float64 and value.ndim == 1, (key, field)  # per-neuron arrays
    # effective weights: Dale's law of the source is folded into the NIR weight
    w = ng.nodes["x->lif"].weight
    sign = g["x"].dale.sign
    assert np.all(w * sign[None, :] >= 0) and np.array_equal(ng.nodes["x->lif"].bias, np.arange(4.0))


def test_delays_become_delay_nodes_in_seconds_before_the_weights(tmp_path: Path):
    g = exportable_graph()
    ng = export_quietly(g, dt=2e-3)
    delay = ng.nodes["u->li.delay"]
    assert isinstance(delay, nir.Delay) and np.allclose(delay.delay, 3 * 2e-3) and delay.delay.shape == (3,)
    assert ("u", "u->li.delay") in ng.edges and ("u->li.delay", "u->li") in ng.edges
    # a delay-1 projection closing a cycle is left implicit, as peers write recurrent layers
    assert "lif->lif.delay" not in ng.nodes and ("lif->lif", "lif") in ng.edges
    assert "sub->cuba.delay" not in ng.nodes and np.allclose(ng.nodes["sub->cuba slow.delay"].delay, 4 * 2e-3)


def test_delays_survive_nir_adding_inputs_for_root_populations():
    """NIR's reader gives a population without inputs an Input of its own; the exporter measures the
    cycle rule's depths the same way, so a recurrent pair fed only by it keeps both delays."""
    g = ntg.Graph("roots")
    g.input("x", 1)
    for name in ("a", "p", "q", "r"):
        g.population(name, ntg.LIF(tau_mem=1e-2), 1)
    g.dense("x", "a")
    g.dense("p", "q")
    g.dense("q", "r", delay=1)
    g.dense("r", "q", delay=1)
    g.output("y", "a")
    g.output("z", "r")
    plain = from_nir(export_quietly(g), dialect="nir")
    assert "input_p" in plain.inputs
    assert {p: plain[p].delay for p in g.projections} == {"x->a": 0, "p->q": 0, "q->r": 1, "r->q": 1}


def test_pipelined_timing_writes_the_effective_delays():
    g = ntg.Graph("pipe")
    g.input("x", 2)
    g.population("a", ntg.LIF(tau_mem=1e-2), 2)
    g.dense("x", "a", weight=np.eye(2))
    g.output("y", "a")
    ng = export_quietly(g, timing="pipelined")
    assert np.allclose(ng.nodes["x->a.delay"].delay, DT)
    plain = from_nir(ng, dialect="nir")
    assert plain["x->a"].delay == 1  # the NIR fields alone give the pipelined network under sync timing
    assert from_nir(ng)["x->a"].delay == 0  # ntgraph's own reading restores the graph


def test_nir_fields_alone_mean_what_ntgraph_simulates(tmp_path: Path):
    """Read ntgraph's file as plain NIR (ignoring ntgraph's metadata): same network, same outputs."""
    g = exportable_graph()
    keep = ["x", "u", "lif", "cuba", "if", "li", "x->lif", "lif->lif", "u->cuba", "u->li", "x->if balanced",
            "u->if", "y_lif", "y_li", "y_if", "echo"]
    small = ntg.Graph("peer-exact")
    for node_id in keep:
        payload = g[node_id]
        kw = {}
        if isinstance(payload, (ntg.Projection, ntg.Output)):
            kw["source"] = g.source(node_id)
        if isinstance(payload, ntg.Projection):
            kw["target"] = g.target(node_id)
        small.add(node_id, payload, **kw)
    export_quietly(small, tmp_path / "net.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit dialect assumes nothing: no warning
        plain = from_nir(tmp_path / "net.nir", dialect="nir")
    # NIR's type inference gives the leaf population 'cuba' an Output of its own when the file is read
    assert set(plain) == set(small) | {"output_cuba"}
    assert isinstance(plain["u->if"], ntg.Dense) and plain["lif->lif"].delay == 1 and plain["u->li"].delay == 3
    x = inputs(small)
    a, b = run(small, x), run(plain, x)
    for k in a:
        assert np.allclose(a[k], b[k], rtol=0, atol=1e-12), k
        if k.endswith("spikes") or k.startswith("y_if"):
            assert np.array_equal(a[k], b[k]), k


# ------------------------------------------------------------------ what peers cannot see
def test_alif_and_subtract_reset_warn_once_naming_the_nodes():
    g = exportable_graph()
    with pytest.warns(NirExportWarning) as record:
        ng = to_nir(g, dt=DT)
    assert len(record) == 1
    text = str(record[0].message)
    assert "'alif' (ALIF)" in text and "tau_adapt" in text and "'lif/sub' (LIF)" in text and "subtract" in text
    assert isinstance(ng.nodes["alif"], nir.LIF)


def test_strict_mode_refuses_what_peers_would_read_differently():
    with pytest.raises(UnsupportedNodeError, match=r"strict.*'alif' \(ALIF\)"):
        to_nir(exportable_graph(), dt=DT, strict=True)
    g = ntg.Graph("exact")
    g.input("x", 1)
    g.population("a", ntg.LIF(tau_mem=1e-2), 1)
    g.dense("x", "a")
    g.output("y", "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_nir(g, dt=DT, strict=True)


@pytest.mark.parametrize("model,why", [
    (ntg.WilsonCowan(tau=1e-2), "rate"),
    (ntg.RateUnit(tau=None), "sigmoid"),
])
def test_rate_models_cannot_be_exported_and_the_error_says_why(model, why):
    g = ntg.Graph("rates")
    g.input("x", 2)
    g.population("rate pop", model, 2)
    g.dense("x", "rate pop")
    g.output("y", "rate pop")
    with pytest.raises(UnsupportedNodeError, match=rf"Population 'rate pop' has model {type(model).__name__}.*{why}"):
        to_nir(g, dt=DT)


def test_backend_and_options_are_checked():
    g = exportable_graph()
    with pytest.raises(ValidationError, match="one_to_one"):
        to_nir(g, dt=DT, one_to_one="diag")
    with pytest.raises(ValidationError, match="unknown option"):
        ntg.compile(g, "nir", dt=DT, colour="blue")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        assert isinstance(ntg.compile(g, "nir", dt=DT), nir.NIRGraph)
    assert NirBackend.name == "nir"


def test_a_graph_without_any_input_is_refused_clearly():
    g = ntg.Graph("closed loop")
    g.population("a", ntg.LIF(tau_mem=1e-2), 2)
    g.dense("a", "a")
    g.output("y", "a")
    with pytest.raises(ValidationError, match="NIR needs an Input connected"):
        to_nir(g, dt=DT)


# ------------------------------------------------------------------ the file wins over stale metadata
def _edit(path: Path, dataset: str, index: tuple, value: float) -> None:
    with h5py.File(path, "r+") as f:
        ds = f[dataset]
        edited = ds[()]
        edited[index] = value
        ds[...] = edited


def test_the_nir_fields_are_the_truth_and_stale_metadata_is_dropped(tmp_path: Path):
    g = exportable_graph()
    path = tmp_path / "net.nir"
    export_quietly(g, path)
    # An edit (say, by another tool) that keeps the constraints: read exactly, with the new value.
    new = g["x->lif"].weight[0, 0] + 0.125
    _edit(path, "node/nodes/x->lif/weight", (0, 0), new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = from_nir(path)
    assert back["x->lif"].weight[0, 0] == new and back["lif"] == g["lif"]
    # An edit that breaks Dale's law recorded in the metadata: the metadata is stale, the NIR fields win.
    _edit(path, "node/nodes/x->lif/weight", (0, 0), -1.0)
    with pytest.warns(NirImportWarning, match="edited after ntgraph wrote it"):
        back = from_nir(path)
    assert back["x->lif"].weight[0, 0] == -1.0 and back["lif"].constraints == ()
    with pytest.raises(FileFormatError, match="stale"):
        from_nir(path, dialect="ntgraph")


def test_reading_errors(tmp_path: Path):
    with pytest.raises(FileFormatError, match="does not exist"):
        from_nir(tmp_path / "missing.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(FileFormatError, match="not a NIR file"):
        from_nir(tmp_path / "junk.nir")
    with pytest.raises(ValidationError, match="dialect"):
        from_nir(export_quietly(exportable_graph()), dialect="brian")
    with pytest.raises(FileFormatError, match="no ntgraph metadata"):
        plain = nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
        from_nir(plain, dialect="ntgraph")


def test_writes_are_atomic(tmp_path: Path):
    path = tmp_path / "net.nir"
    path.write_bytes(b"old")
    g = ntg.Graph("bad")
    g.input("x", 1)
    g.population("w", ntg.WilsonCowan(tau=1e-2), 1)
    g.dense("x", "w")
    g.output("y", "w")
    with pytest.raises(UnsupportedNodeError):
        to_nir(g, path, dt=DT)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["net.nir"]


# ------------------------------------------------------------------ property: random graphs with cycles
MODELS = [
    lambda n, d: ntg.LIF(tau_mem=d(st.floats(2e-3, 5e-2)), reset=d(st.sampled_from(["zero", "subtract"]))),
    lambda n, d: ntg.CubaLIF(tau_syn=d(st.floats(2e-3, 2e-2)), tau_mem=d(st.floats(2e-3, 5e-2)),
                             w_in=d(st.floats(0.5, 2.0))),
    lambda n, d: ntg.ALIF(tau_mem=d(st.floats(2e-3, 5e-2)), tau_adapt=0.1, beta=d(st.floats(0.0, 2.0))),
    lambda n, d: ntg.IF(r=d(st.floats(100.0, 2000.0))),
    lambda n, d: ntg.LI(tau_mem=d(st.floats(2e-3, 5e-2)), v_leak=d(st.floats(-0.5, 0.5))),
]


@st.composite
def random_graphs(draw: st.DrawFn) -> ntg.Graph:
    seed = draw(st.integers(0, 2**16))
    g = ntg.Graph(f"random-{seed}", seed=seed)
    n_inputs = draw(st.integers(1, 2))
    sources = []
    for k in range(n_inputs):
        sources.append(g.input(f"in{k}", draw(st.integers(1, 4)), excitatory=draw(st.sampled_from([None, 0.5]))))
    pops = []
    for k in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, 4))
        model = draw(st.sampled_from(MODELS))(size, draw)
        pops.append(g.population(f"p{k}", model, size, excitatory=draw(st.sampled_from([None, 0.5]))))
    for src in sources:
        g.dense(src, draw(st.sampled_from(pops)), scale=3.0)
    for _ in range(draw(st.integers(len(pops), 3 * len(pops)))):
        src = draw(st.sampled_from(sources + pops))
        dst = draw(st.sampled_from(pops))
        delay = draw(st.sampled_from([None, None, 0, 1, 2, 3]))
        kind = draw(st.sampled_from(["dense", "sparse", "one"]))
        try:
            if kind == "one" and g.node_size(src) == g.node_size(dst):
                g.one_to_one(src, dst, weight=draw(st.floats(-2.0, 2.0)), delay=delay)
            elif kind == "sparse":
                g.sparse(src, dst, p=0.7, delay=delay, scale=2.0)
            else:
                g.dense(src, dst, delay=delay, scale=2.0, bias=None if draw(st.booleans()) else np.ones(g.node_size(dst)),
                        p=draw(st.sampled_from([None, 0.6])), bounds=draw(st.sampled_from([None, (-1.0, 1.5)])),
                        no_self=src == dst and draw(st.booleans()))
        except ValidationError:
            continue
    for k, p in enumerate(pops):
        g.output(f"out{k}", p)
    try:
        ntg.validate(g, dt=DT)
    except (CycleError, ValidationError):
        assume(False)
    return g


def _check_round_trip(g: ntg.Graph, timing: str) -> None:
    ng = export_quietly(g, timing=timing)
    back = from_nir(ng)
    assert back == g
    x = inputs(g, steps=12)
    a, b = run(g, x, timing=timing), run(back, x, timing=timing)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # The NIR structure alone (Delay nodes + the implicit cycle rule) gives every projection its delay.
    plain = from_nir(ng, dialect="nir")
    extra = 1 if timing == "pipelined" else 0
    for p in g.projections:
        assert plain[p].delay == g[p].delay + extra, p


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_graphs(), st.sampled_from(["sync", "pipelined"]))
def test_random_graphs_round_trip_exactly(g: ntg.Graph, timing: str):
    _check_round_trip(g, timing)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_graphs(), st.sampled_from(["sync", "pipelined"]))
def test_random_graphs_round_trip_exactly_many(g: ntg.Graph, timing: str):
    _check_round_trip(g, timing)
