"""Connection ablation (ntgraph.ablation): which synapses go, and that constraints still hold afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import ntgraph as ntg
from ntgraph.ablation import ablate, ablation_keep, present_synapses
from ntgraph.constraints import ConnectivityMask
from ntgraph.errors import ValidationError


def test_smallest_removes_by_magnitude():
    w = np.array([[0.5, -0.1, 2.0], [-3.0, 0.2, 0.05]])
    keep = ablation_keep(w, 0.5, "smallest")  # k = 3 of 6: |w| 0.05, 0.1, 0.2
    np.testing.assert_array_equal(keep, [[True, False, True], [True, False, False]])
    keep = ablation_keep(w, 0.5, "largest")   # |w| 3.0, 2.0, 0.5
    np.testing.assert_array_equal(keep, [[False, True, False], [False, True, True]])


def test_rounding_and_the_ends():
    w = np.arange(1.0, 8.0)  # 7 synapses
    assert ablation_keep(w, 0.0).all()
    assert not ablation_keep(w, 1.0).any()
    assert ablation_keep(w, 0.5).sum() == 3  # round(3.5) = 4 removed (half up)
    np.testing.assert_array_equal(ablation_keep(w, 0.5), w > 4)


def test_absent_synapses_are_not_counted_or_chosen():
    w = np.array([0.0, 0.3, 0.1, 0.2])
    present = np.array([False, True, True, True])
    keep = ablation_keep(w, 1 / 3, "smallest", present=present)  # 1 of the 3 present: the 0.1
    np.testing.assert_array_equal(keep, [False, True, False, True])


def test_random_is_uniform_and_seeded():
    w = np.ones(10)
    counts = np.zeros(10)
    for s in range(2000):
        keep = ablation_keep(w, 0.3, "random", seed=s)
        assert keep.sum() == 7
        counts += ~keep
    # each synapse is removed with probability 0.3: 600 of 2000, binomial sd ~20.5; 5 sd bound
    assert np.all(np.abs(counts - 600) < 5 * np.sqrt(2000 * 0.3 * 0.7))
    np.testing.assert_array_equal(ablation_keep(w, 0.3, "random", seed=4), ablation_keep(w, 0.3, "random", seed=4))


def test_bad_arguments():
    with pytest.raises(ValidationError, match="fraction"):
        ablation_keep(np.ones(3), 1.5)
    with pytest.raises(ValidationError, match="strategy"):
        ablation_keep(np.ones(3), 0.5, "biggest")
    with pytest.raises(ValidationError, match="present"):
        ablation_keep(np.ones(3), 0.5, present=np.ones(2, bool))


def _network() -> ntg.Graph:
    g = ntg.Graph("abl", seed=1)
    g.input("x", 3)
    g.population("h", ntg.LIF(tau_mem=20e-3), 10, excitatory=0.8)
    g.dense("x", "h")
    g.dense("h", "h", no_self=True, p=0.6)
    g.population("o", ntg.LI(tau_mem=20e-3), 2)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def test_ablate_graph_keeps_dale_and_masks():
    g = _network()
    rec = "h->h"
    present = present_synapses(g, rec)
    assert not present[np.diag_indices(10)].any()
    n = int(present.sum())
    old = np.array(g[rec].weight)
    out = ablate(g, rec, 0.4, "smallest")
    ntg.validate(out)  # Dale's law, no-self and the mask all hold
    new = np.array(out[rec].weight)
    removed = present & ~present_synapses(out, rec)
    assert removed.sum() == int(np.floor(0.4 * n + 0.5))
    assert np.all(new[removed] == 0) and np.all(new[~removed] == old[~removed])
    # the removed ones are the smallest in magnitude among the present synapses
    assert np.abs(old[removed]).max() <= np.abs(old[present & ~removed]).min()
    # signs of the survivors follow the presynaptic Dale signs (columns 0-7 excitatory)
    assert np.all(new[:, :8] >= 0) and np.all(new[:, 8:] <= 0)
    # one ConnectivityMask, the intersection of the old mask and the survivors; the input is untouched
    masks = [c for c in out[rec].constraints if isinstance(c, ConnectivityMask)]
    assert len(masks) == 1
    np.testing.assert_array_equal(g[rec].weight, old)
    # other projections are unchanged
    np.testing.assert_array_equal(out["h->o"].weight, g["h->o"].weight)


def test_ablated_synapses_stay_zero_in_torch():
    torch = pytest.importorskip("torch")
    g = ablate(_network(), ["h->h", "x->h"], 0.5, "random", seed=3)
    model = ntg.compile(g, "torch", dt=1e-3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.rand(20, 4, 3)
    model(x)["y"].pow(2).sum().backward()
    opt.step()
    trained = model.to_graph()
    ntg.validate(trained)
    for name in ("h->h", "x->h"):
        gone = ~present_synapses(g, name)
        assert np.all(np.asarray(trained[name].weight)[gone] == 0)


def test_ablate_all_and_none():
    g = _network()
    assert ablate(g, "h->h", 0.0) == g or np.array_equal(ablate(g, "h->h", 0.0)["h->h"].weight, g["h->h"].weight)
    assert not np.any(ablate(g, "h->h", 1.0)["h->h"].weight)
    with pytest.raises(ValidationError, match="no node"):
        ablate(g, "nope", 0.5)
