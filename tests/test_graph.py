"""The builder API, printing, passes, the compiler pipeline and the backend registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from ntgraph.passes import default_pipeline
from ntgraph.registry import LoweringTable, available_backends, get_backend, register_backend


def small_graph() -> ntg.Graph:
    g = ntg.Graph("small", seed=3)
    g.input("x", 4)
    g.population("h", ntg.LIF(tau_mem=np.array([10e-3, 20e-3, 30e-3]), reset="subtract"), 3, excitatory=[1, 1, -1])
    g.dense("x", "h")
    g.dense("h", "h", no_self=True)
    g.population("o", ntg.LI(tau_mem=5e-3), 2)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def test_builder_returns_ids_and_default_names():
    g = ntg.Graph("n")
    assert g.input("x", 2) == "x"
    assert g.population("h", ntg.LIF(tau_mem=0.01), 3) == "h"
    assert g.dense("x", "h") == "x->h"
    assert g.dense("x", "h") == "x->h#2"  # several projections between the same nodes are ordinary
    assert g.one_to_one("h", "h", weight=0.5) == "h->h"
    assert g.output("y", "h") == "y"
    assert list(g) == ["x", "h", "x->h", "x->h#2", "h->h", "y"]
    assert g.incoming("h") == ["x->h", "x->h#2", "h->h"]
    assert g.source("x->h") == "x" and g.target("x->h") == "h"


def test_recurrent_projections_default_to_delay_one():
    g = ntg.Graph("n")
    g.input("x", 2)
    g.population("a", ntg.LIF(tau_mem=0.01), 3)
    g.population("b", ntg.LIF(tau_mem=0.01), 3)
    g.dense("x", "a")
    assert g["x->a"].delay == 0
    assert g[g.dense("a", "b")].delay == 0
    assert g[g.dense("b", "a")].delay == 1  # closes a -> b -> a
    assert g[g.dense("a", "a")].delay == 1  # self-projection
    assert g[g.dense("a", "b", delay=4)].delay == 4


def test_scalars_broadcast_and_arrays_stay_per_neuron():
    g = small_graph()
    model = g["h"].model
    assert model.tau_mem.tolist() == [10e-3, 20e-3, 30e-3]
    assert model.v_th.tolist() == [1.0, 1.0, 1.0]
    assert not model.v_th.flags.writeable  # payloads are immutable


def test_same_seed_same_weights_and_node_streams_are_independent():
    a, b = small_graph(), small_graph()
    assert a == b
    c = ntg.Graph("small", seed=3)
    c.input("x", 4)
    c.input("extra", 7)  # another node added first does not change x->h's weights
    c.population("h", ntg.LIF(tau_mem=np.array([10e-3, 20e-3, 30e-3]), reset="subtract"), 3, excitatory=[1, 1, -1])
    c.dense("x", "h")
    np.testing.assert_array_equal(c["x->h"].weight, a["x->h"].weight)


def test_print_has_one_line_per_node_and_summary_counts():
    g = small_graph()
    text = str(g)
    lines = text.splitlines()
    assert lines[0] == "Graph 'small' (7 nodes)"
    assert len(lines) == 1 + len(g)
    assert "h -> h" in text and "delay=1" in text and "Dale 2E/1I" in text and "no self" in text
    summary = g.summary()
    assert "neurons" in summary and "synapses" in summary and "constraints" in summary
    total = summary.splitlines()[-1].split()
    n_syn = sum(g[p].n_synapses for p in g.projections)
    assert total == ["total", "5", str(n_syn)]


def test_payload_equality_is_array_aware():
    a = ntg.LIF(tau_mem=[0.01, 0.02])
    assert a == ntg.LIF(tau_mem=[0.01, 0.02])
    assert a != ntg.LIF(tau_mem=[0.01, 0.03])
    assert a != ntg.LIF(tau_mem=[0.01, 0.02], reset="subtract")


def test_with_payload_does_not_mutate_the_original():
    g = small_graph()
    w = g["h->o"].weight
    g2 = g.with_payload("h->o", g["h->o"].replace(weight=np.zeros_like(w)))
    np.testing.assert_array_equal(g["h->o"].weight, w)
    assert not g2["h->o"].weight.any()


def test_passes_annotate_copies_and_never_mutate_input():
    g = small_graph()
    before = g.copy()
    out = default_pipeline().run(g, timing="pipelined")
    assert g == before and g.attrs == {} and all(g.meta(n) == {} for n in g)
    assert out.attrs["order"] == ["h", "o"]
    assert out.meta("x->h")["delay"] == 1 and out.meta("h->h")["delay"] == 2
    assert out.meta("h->o")["shape"] == (2, 3)
    rc = out.meta("h->h")["constraints"]
    assert rc.sign[:, 2].tolist() == [-1, -1, -1] and not rc.mask.diagonal().any()
    res = out.attrs["resources"]
    assert res["neurons"] == 5 and res["synapses"] == sum(g[p].n_synapses for p in g.projections)


def test_schedule_orders_sources_first_regardless_of_insertion():
    g = ntg.Graph("order")
    g.input("x", 1)
    g.population("late", ntg.LI(tau_mem=0.01), 1)
    g.population("early", ntg.LIF(tau_mem=0.01), 1)
    g.dense("x", "early")
    g.dense("early", "late")
    g.output("y", "late")
    assert default_pipeline().run(g).attrs["order"] == ["early", "late"]


def test_pipeline_prints_numbered_passes():
    text = str(default_pipeline())
    assert text.splitlines()[0].startswith("1. infer_shapes")
    assert "resolve_constraints" in text


def test_backend_registry_entry_point_and_runtime_registration():
    assert "torch" in available_backends()
    assert get_backend("torch").name == "torch"

    class Echo:
        name = "echo"

        def lower(self, graph, options):
            return graph, options

    register_backend("echo", Echo)
    graph, options = ntg.compile(small_graph(), "echo", dt=1e-3, timing="pipelined", foo=1)
    assert options.extra == {"foo": 1} and graph.attrs["timing"] == "pipelined"


def test_lowering_table_looks_up_along_the_mro():
    table = LoweringTable("test")

    @table.register(ntg.Projection)
    def lower_projection(payload):
        return "projection"

    assert table.lookup(ntg.OneToOne(weight=[1.0]), "p")(None) == "projection"
    with pytest.raises(ntg.UnsupportedNodeError, match=r"backend 'test'.*node 'n'.*Input"):
        table.lookup(ntg.Input(size=1), "n")


def test_compile_returns_a_torch_module_on_cpu_in_float32_and_float64():
    g = small_graph()
    for dtype in (torch.float32, torch.float64):
        m = ntg.compile(g, "torch", dt=1e-3, dtype=dtype)
        assert isinstance(m, torch.nn.Module)
        res = m(torch.rand(7, 2, 4))
        assert res["y"].shape == (7, 2, 2) and res["y"].dtype == dtype


def test_to_graph_round_trips_in_float64():
    g = small_graph()
    m = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert m.to_graph() == g
