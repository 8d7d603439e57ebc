"""The snnTorch and Norse adapters: each peer's own NIR importer, run on ntgraph's NIR export."""

from __future__ import annotations

import numpy as np
import pytest

import ntgraph as ntg
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.errors import BackendNotFoundError, UnsupportedNodeError, ValidationError
from ntgraph.registry import get_backend

pytest.importorskip("torch", reason="the reference is the torch backend")
pytest.importorskip("nir", reason="the peers are reached through NIR")

#: the adapters announce what the importers print (snnTorch's threshold hack); expected here
pytestmark = pytest.mark.filterwarnings("ignore::backends.peers.common.PeerWarning")

DT = 1e-3
PROBES = ["h.v", "h.spikes", "o.v", "o.spikes"]


def peer(name: str):
    try:
        return get_backend(name)
    except BackendNotFoundError as exc:
        pytest.skip(str(exc))


def feed_forward(reset: str = "zero", readout: str = "lif") -> ntg.Graph:
    g = ntg.Graph("peers", seed=3)
    g.input("x", 3)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=0.5, reset=reset), 6)
    g.dense("x", "h", scale=1.0)
    if readout == "lif":
        g.population("o", ntg.LIF(tau_mem=5e-3, v_th=0.4, reset=reset), 3)
    else:
        g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o", scale=1.0)
    g.output("y", "o")
    return g


def run_both(name: str, g: ntg.Graph, x: np.ndarray, record=PROBES, reference=PROBES) -> tuple[dict, dict]:
    options = CompileOptions(dt=DT)
    prepared = prepare(g, options)
    nir_graph = get_backend("nir").lower(prepared, CompileOptions(dt=DT, extra={"one_to_one": "linear"}))
    got = peer(name).simulate_nir(nir_graph, {"x": x}, dt=DT, record=record)
    want = ntg.simulate(g, x, target="torch", dt=DT, dtype="float64", record=reference)
    return got, want


INPUT = np.random.default_rng(0).random((60, 2, 3)) * 2


@pytest.mark.parametrize("name", ["snntorch", "norse"])
def test_zero_reset_euler_network_is_reproduced(name):
    got, want = run_both(name, feed_forward("zero"), INPUT)
    assert want["h.spikes"].sum() > 20 and want["o.spikes"].sum() > 10
    for key in ("h.spikes", "o.spikes", "y"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("h.v", "o.v"):  # the peers compute in float32
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=2e-6, err_msg=key)


@pytest.mark.parametrize("name", ["snntorch", "norse"])
def test_subtract_reset_is_lost(name):
    with pytest.warns(UserWarning, match="reset='subtract'"):  # the NIR export says so
        got, want = run_both(name, feed_forward("subtract"), INPUT)
    first = int(np.argmax(want["h.spikes"].reshape(len(INPUT), -1).any(axis=1)))
    # identical up to the first spike, then the peer resets to zero instead of subtracting the threshold
    np.testing.assert_array_equal(got["h.spikes"][: first + 1], want["h.spikes"][: first + 1])
    b, n = np.argwhere(want["h.spikes"][first])[0]
    assert got["h.v"][first, b, n] == 0.0 and want["h.v"][first, b, n] > 0.0
    assert not np.array_equal(got["h.spikes"], want["h.spikes"])


def test_norse_drops_li_and_says_so():
    from backends.peers import PeerWarning

    g = feed_forward("zero", readout="li")
    with pytest.warns(PeerWarning, match="nir.LI .*'o'.*drops"):
        got, want = run_both("norse", g, INPUT, record=["h.spikes"], reference=["h.spikes", "o.v"])
    np.testing.assert_array_equal(got["h.spikes"], want["h.spikes"])
    # the "readout" is the raw input current W @ z of the LI, not its leaky-integrated voltage
    w = g["h->o"].weight
    np.testing.assert_allclose(got["y"], want["h.spikes"] @ w.T, rtol=0, atol=1e-5)
    assert np.abs(got["y"] - want["y"]).max() > 0.1


def test_snntorch_refuses_li_with_a_clear_error():
    with pytest.raises(UnsupportedNodeError, match="nir.LI.*cannot map"):
        run_both("snntorch", feed_forward("zero", readout="li"), INPUT, record=[], reference=[])


@pytest.mark.parametrize("name", ["snntorch", "norse"])
def test_peers_only_simulate_nir(name):
    g = feed_forward()
    with pytest.raises(ValidationError, match="only simulates NIR graphs"):
        ntg.compile(g, name, dt=DT)
    assert "nir:reset-mode" in peer(name).limitations
