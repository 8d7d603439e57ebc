"""Constraints survive training, and the constraint algebra is right.

The property tests build random small graphs (random neuron models, Dale
fractions, connectivity, sign masks, self-connections, bounds, balanced
initialisation), compile them for torch and push the parameters around with
large-step SGD and Adam and with raw noise.  After every step the effective
weights, and the graph written back by ``to_graph()``, must still obey every
constraint exactly.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntgraph
from ntgraph import ALIF, LI, LIF, ConstraintError, Graph, ValidationError, WilsonCowan
from ntgraph.constraints import (
    BalancedInit,
    ConnectivityMask,
    DalesLaw,
    NoSelfConnections,
    ResolvedConstraints,
    SignMask,
    WeightBounds,
    balance_ei,
    find_violation,
    project_weights,
    resolve,
)
from ntgraph.ir import Dense, OneToOne, Sparse

DT = 1e-3
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAU_NAMES = ("tau_mem", "tau_adapt", "tau")

# ----------------------------------------------------------------------------- random networks
MODELS = {
    "LIF": (lambda rng: LIF(tau_mem=rng.uniform(2e-3, 50e-3), v_th=rng.uniform(0.2, 1.5)), ("tau_mem", "v_th")),
    "ALIF": (lambda rng: ALIF(tau_mem=rng.uniform(2e-3, 50e-3), tau_adapt=rng.uniform(20e-3, 500e-3)),
             ("tau_mem", "tau_adapt", "beta")),
    "LI": (lambda rng: LI(tau_mem=rng.uniform(2e-3, 50e-3)), ("tau_mem",)),
    "WilsonCowan": (lambda rng: WilsonCowan(tau=rng.uniform(2e-3, 50e-3), mu=rng.normal(), r=rng.uniform(0, 1)),
                    ("tau", "mu", "r")),
}

dale_fraction = st.one_of(st.none(), st.floats(0.0, 1.0))


@st.composite
def projection_options(draw: Any, recurrent: bool) -> dict:
    return {
        "p": draw(st.one_of(st.none(), st.floats(0.2, 1.0))),
        "sign": draw(st.booleans()),
        "no_self": recurrent and draw(st.booleans()),
        "low": draw(st.one_of(st.just(-np.inf), st.floats(-2.0, 0.0))),
        "high": draw(st.one_of(st.just(np.inf), st.floats(0.0, 2.0))),
        "balanced": draw(st.booleans()),
        "scale": draw(st.floats(0.1, 3.0)),
    }


@st.composite
def network_specs(draw: Any) -> dict:
    """A description of a random network: one Input, one or two populations, dense projections."""
    n_pops = draw(st.integers(1, 2))
    pops = []
    for k in range(n_pops):
        kind = draw(st.sampled_from(sorted(MODELS)))
        learnable = draw(st.lists(st.sampled_from(MODELS[kind][1]), unique=True, max_size=3))
        pops.append({"id": f"p{k}", "kind": kind, "size": draw(st.integers(1, 6)),
                     "excitatory": draw(dale_fraction), "learnable": learnable})
    edges = [("x", "p0")]
    candidates = [("p0", "p0")]
    if n_pops == 2:
        edges.append(("p0", "p1"))
        candidates += [("p1", "p0"), ("p1", "p1"), ("x", "p1")]
    edges += [e for e in candidates if draw(st.booleans())]
    return {
        "seed": draw(st.integers(0, 2**31 - 1)),
        "n_in": draw(st.integers(1, 5)),
        "in_excitatory": draw(dale_fraction),
        "pops": pops,
        "projections": [(s, t, draw(projection_options(s == t))) for s, t in edges],
    }


def build(spec: dict) -> Graph:
    """The graph a spec describes.  An infeasible balanced initialisation is dropped."""
    rng = np.random.default_rng(spec["seed"])
    g = Graph("random", seed=spec["seed"])
    g.input("x", spec["n_in"], excitatory=spec["in_excitatory"])
    for pop in spec["pops"]:
        g.population(pop["id"], MODELS[pop["kind"]][0](rng), pop["size"], excitatory=pop["excitatory"],
                     learnable=pop["learnable"])
    for src, dst, opt in spec["projections"]:
        n_pre, n_post = g.node_size(src), g.node_size(dst)
        dale = g[src].dale
        sign = None
        if opt["sign"]:
            if dale is not None:  # only signs that agree with Dale's law, or free
                sign = np.where(rng.random((n_post, n_pre)) < 0.5, dale.sign[None, :], 0)
            else:
                sign = rng.integers(-1, 2, size=(n_post, n_pre))
        kwargs = dict(p=opt["p"], sign=sign, no_self=opt["no_self"], scale=opt["scale"],
                      bounds=None if (np.isinf(opt["low"]) and np.isinf(opt["high"])) else (opt["low"], opt["high"]))
        balanced = opt["balanced"] and dale is not None
        try:
            g.dense(src, dst, balanced=balanced, **kwargs)
        except ConstraintError as exc:
            assert balanced and "BalancedInit" in str(exc), exc
            g.dense(src, dst, **kwargs)
    g.output("y", spec["pops"][-1]["id"])
    return g


# ----------------------------------------------------------------------------- checks
def assert_projection_ok(graph: Graph, proj: str, weight: np.ndarray, low_high_dtype: Any = np.float64) -> None:
    """Every constraint on ``proj`` holds for ``weight`` (a dense (n_post, n_pre) matrix)."""
    payload = graph[proj]
    src, dst = graph.source(proj), graph.target(proj)
    w = np.asarray(weight)
    assert w.shape == (payload.n_post, payload.n_pre)
    assert np.all(np.isfinite(w)), f"{proj}: non-finite weights"
    dale = graph[src].dale
    if dale is not None:
        exc, inh = dale.sign > 0, dale.sign < 0
        assert np.all(w[:, exc] >= 0), f"{proj}: an excitatory neuron has a negative weight\n{w}"
        assert np.all(w[:, inh] <= 0), f"{proj}: an inhibitory neuron has a positive weight\n{w}"
    for c in payload.constraints:
        if isinstance(c, SignMask):
            assert np.all(w[c.sign > 0] >= 0) and np.all(w[c.sign < 0] <= 0), f"{proj}: sign mask broken\n{w}"
        elif isinstance(c, ConnectivityMask):
            assert np.all(w[~c.mask] == 0), f"{proj}: absent synapse non-zero\n{w}"
        elif isinstance(c, NoSelfConnections):
            assert src == dst
            assert np.all(np.diag(w) == 0), f"{proj}: self-connection non-zero\n{w}"
        elif isinstance(c, WeightBounds):
            low, high = low_high_dtype(c.low), low_high_dtype(c.high)
            assert np.all(w >= low) and np.all(w <= high), f"{proj}: outside [{c.low}, {c.high}]\n{w}"


def assert_module_ok(module: Any, graph: Graph) -> None:
    """Effective weights of the module and the graph written back both obey every constraint."""
    for proj in graph.projections:
        w = module.projections[proj].effective_weight().detach()
        # The module computes in float32: its bounds are the float32 roundings of the IR's.
        assert_projection_ok(graph, proj, w.cpu().numpy(), low_high_dtype=np.float32)
    g2 = module.to_graph()
    ntgraph.validate(g2, dt=DT)  # checks every constraint, positive time constants and dt <= tau
    for proj in g2.projections:
        assert g2[proj].constraints == graph[proj].constraints
        assert_projection_ok(g2, proj, g2[proj].weight)
    for pop in g2.populations:
        model = g2[pop].model
        for name in g2[pop].learnable:
            value = np.asarray(getattr(model, name))
            assert np.all(np.isfinite(value))
            if name in TAU_NAMES:
                assert np.all(value >= DT), f"{pop}.{name} = {value} < dt"
            if model.param_info(name)["nonnegative"]:
                assert np.all(value >= 0), f"{pop}.{name} = {value} < 0"
        if isinstance(model, WilsonCowan):
            assert np.all(model.tau >= DT) and np.all(model.r >= 0)


def outputs_loss(module: Any, result: Any, coef: dict, w_coef: dict) -> torch.Tensor:
    """A random linear functional of the outputs, plus squares and a random tilt of the weights."""
    loss = sum((coef[k] * v).sum() for k, v in result.outputs.items())
    for proj, m in module.projections.items():
        w = m.effective_weight()
        loss = loss + (w ** 2).sum() + (w_coef[proj] * w).sum()
    return loss


# ----------------------------------------------------------------------------- property: training
@SETTINGS
@given(spec=network_specs(), data=st.data())
def test_constraints_survive_training(spec: dict, data: Any) -> None:
    g = build(spec)
    ntgraph.validate(g, dt=DT)
    module = ntgraph.compile(g, "torch", dt=DT)
    assert_module_ok(module, g)

    rng = np.random.default_rng(spec["seed"] + 1)
    params = list(module.parameters())
    sgd = torch.optim.SGD(params, lr=data.draw(st.floats(1e-2, 5.0), label="sgd lr"))
    adam = torch.optim.Adam(params, lr=data.draw(st.floats(1e-2, 10.0), label="adam lr"))
    T, batch = 5, 2
    x = torch.tensor(rng.normal(0.0, 2.0, (T, batch, spec["n_in"])), dtype=torch.float32)
    out_size = g.node_size("y")
    steps = data.draw(st.lists(st.sampled_from(["sgd", "adam", "noise"]), min_size=1, max_size=4), label="steps")
    for step in steps:
        if step == "noise":
            scale = data.draw(st.floats(0.01, 10.0), label="noise")
            with torch.no_grad():
                for p in params:
                    p.add_(torch.tensor(rng.normal(0.0, scale, tuple(p.shape)), dtype=p.dtype))
        else:
            opt = sgd if step == "sgd" else adam
            opt.zero_grad()
            coef = {"y": torch.tensor(rng.normal(size=(T, batch, out_size)), dtype=torch.float32)}
            w_coef = {p: torch.tensor(rng.normal(0, 5, tuple(m.weight.shape)), dtype=torch.float32)
                      for p, m in module.projections.items()}
            loss = outputs_loss(module, module(x), coef, w_coef)
            if loss.requires_grad:
                loss.backward()
            opt.step()
        assert_module_ok(module, g)


@SETTINGS
@given(spec=network_specs(), seed=st.integers(0, 2**31 - 1))
def test_torch_map_equals_project_weights(spec: dict, seed: int) -> None:
    """The torch reparametrisation and ``project_weights`` are the same map, for any raw weights."""
    g = build(spec)
    module = ntgraph.compile(g, "torch", dt=DT, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    for proj in g.projections:
        m = module.projections[proj]
        raw = rng.normal(0.0, 3.0, m.weight.shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(raw))
        np.testing.assert_array_equal(m.effective_weight().detach().numpy(), project_weights(raw, m.constraints))
        np.testing.assert_array_equal(m.to_payload().weight, project_weights(raw, m.constraints))


def test_map_agrees_for_sparse_and_one_to_one() -> None:
    g = Graph("sp")
    g.input("x", 6, excitatory=0.5)
    g.population("a", LIF(tau_mem=0.02), 6)
    g.population("b", LIF(tau_mem=0.02), 6)
    g.sparse("x", "a", p=0.5, bounds=(-0.3, 0.4))
    g.one_to_one("a", "b", weight=np.linspace(-1, 1, 6), bounds=(-0.5, 2.0))
    g.one_to_one("x", "b", weight=np.linspace(-1, 1, 6))
    g.output("y", "b")
    module = ntgraph.compile(g, "torch", dt=DT, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for proj in g.projections:
        m = module.projections[proj]
        raw = rng.normal(0.0, 3.0, m.weight.shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(raw))
        w = m.effective_weight().detach().numpy()
        np.testing.assert_array_equal(w, project_weights(raw, m.constraints))
        assert find_violation(w, m.constraints) is None
        assert_projection_ok(g, proj, g.with_payload(proj, m.to_payload())[proj].dense_weight())


# ----------------------------------------------------------------------------- resolve / project / find_violation
def dense_projection(n_post: int, n_pre: int, *constraints: Any) -> Dense:
    return Dense(weight=np.zeros((n_post, n_pre)), constraints=constraints)


@st.composite
def resolved(draw: Any) -> ResolvedConstraints:
    """Random constraints on a random (possibly recurrent) dense projection, resolved."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    recurrent = draw(st.booleans())
    n_pre = draw(st.integers(1, 6))
    n_post = n_pre if recurrent else draw(st.integers(1, 6))
    dale = DalesLaw(rng.choice([-1, 1], n_pre)) if draw(st.booleans()) else None
    cons: list = []
    if draw(st.booleans()):
        cons.append(ConnectivityMask(rng.random((n_post, n_pre)) < 0.6))
    if draw(st.booleans()):
        free = rng.integers(-1, 2, (n_post, n_pre))
        cons.append(SignMask(np.where(free != 0, dale.sign[None, :], 0) if dale is not None else free))
    if recurrent and draw(st.booleans()):
        cons.append(NoSelfConnections())
    if draw(st.booleans()):
        cons.append(WeightBounds(draw(st.floats(-3.0, 0.0)), draw(st.floats(0.0, 3.0))))
    return resolve("w", dense_projection(n_post, n_pre, *cons), dale, recurrent)


@SETTINGS
@given(rc=resolved(), seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_project_weights_is_an_idempotent_projection(rc: ResolvedConstraints, seed: int, scale: float) -> None:
    w = np.random.default_rng(seed).normal(0.0, scale, rc.mask.shape)
    once = project_weights(w, rc)
    assert find_violation(once, rc) is None
    np.testing.assert_array_equal(project_weights(once, rc), once)
    # Weights that already obey the constraints are left alone ...
    if find_violation(w, rc) is None:
        np.testing.assert_array_equal(once, w)
    # ... and absent synapses are exactly zero, whatever came in.
    assert np.all(once[~rc.mask] == 0)


def test_resolve_dale_alone() -> None:
    rc = resolve("e->q", dense_projection(2, 3), DalesLaw([1, -1, 1]), False)
    np.testing.assert_array_equal(rc.sign, [[1, -1, 1], [1, -1, 1]])
    np.testing.assert_array_equal(rc.low, [[0, -np.inf, 0]] * 2)
    np.testing.assert_array_equal(rc.high, [[np.inf, 0, np.inf]] * 2)
    assert rc.mask.all() and not rc.trivial


def test_resolve_combines_dale_and_sign_mask() -> None:
    dale = DalesLaw([1, -1, 1])
    # Signs that agree with Dale's law (or are free) change nothing: Dale fixes every sign.
    mask = SignMask([[1, 0, 0], [0, -1, 1]])
    rc = resolve("e->q", dense_projection(2, 3, mask), dale, False)
    np.testing.assert_array_equal(rc.sign, [[1, -1, 1], [1, -1, 1]])
    # Without Dale's law the mask's signs are fixed and its zeros stay free.
    rc = resolve("x->q", dense_projection(2, 3, SignMask([[1, 0, -1], [0, -1, 1]])), None, False)
    np.testing.assert_array_equal(rc.sign, [[1, 0, -1], [0, -1, 1]])
    np.testing.assert_array_equal(rc.low, [[0, -np.inf, -np.inf], [-np.inf, -np.inf, 0]])
    # A contradiction names the projection, the synapse and both signs.
    with pytest.raises(ConstraintError, match=r"'e->q'\.SignMask: sign -1 at synapse \(1, 2\) .* \(sign 1\)"):
        resolve("e->q", dense_projection(2, 3, SignMask([[1, 0, 0], [0, 0, -1]])), dale, False)


def test_resolve_masks_bounds_and_self() -> None:
    cons = (ConnectivityMask([[True, True], [False, True]]), NoSelfConnections(), WeightBounds(-0.5, 2.0))
    rc = resolve("p->p", dense_projection(2, 2, *cons), DalesLaw([1, -1]), True)
    np.testing.assert_array_equal(rc.mask, [[False, True], [False, False]])
    np.testing.assert_array_equal(rc.low, [[0.0, -0.5], [0.0, -0.5]])
    np.testing.assert_array_equal(rc.high, [[2.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ConstraintError, match=r"'x->p'\.NoSelfConnections"):
        resolve("x->p", dense_projection(2, 2, NoSelfConnections()), None, False)
    with pytest.raises(ConstraintError, match=r"'e->p'\.WeightBounds: no weight satisfies sign -1 and bounds \[0\.5, 0\]"):
        resolve("e->p", dense_projection(2, 2, WeightBounds(0.5, 1.0)), DalesLaw([1, -1]), False)
    with pytest.raises(ConstraintError, match=r"DalesLaw of the source has 3 signs, expected 2"):
        resolve("e->p", dense_projection(2, 2), DalesLaw([1, -1, 1]), False)


def test_resolve_sparse_and_one_to_one_follow_synapse_index() -> None:
    sp = Sparse(weight=[0.1, 0.2, 0.3], post_index=[0, 1, 1], pre_index=[2, 0, 1], n_post=2, n_pre=3,
                constraints=(SignMask([[0, 0, -1], [0, 0, 0]]),))
    rc = resolve("x->p", sp, None, False)
    np.testing.assert_array_equal(rc.sign, [-1, 0, 0])
    rc = resolve("x->p", sp.replace(constraints=()), DalesLaw([1, -1, -1]), False)
    np.testing.assert_array_equal(rc.sign, [-1, 1, -1])
    rc = resolve("p->p", OneToOne(weight=[1.0, 2.0], constraints=(NoSelfConnections(),)), DalesLaw([1, -1]), True)
    np.testing.assert_array_equal(rc.mask, [False, False])


def test_find_violation_messages() -> None:
    cons = (ConnectivityMask([[True, True, False]]), WeightBounds(-1.0, 1.0))
    rc = resolve("e->q", dense_projection(1, 3, *cons), DalesLaw([1, -1, 1]), False)
    assert find_violation(np.array([[0.5, -0.5, 0.0]]), rc) is None
    assert find_violation(np.array([[0.5, -0.5, 0.25]]), rc) == (
        "weight[0, 2] = 0.25 an absent synapse (masked) must be exactly 0 (1 such weights)"
    )
    assert find_violation(np.array([[-0.5, -0.5, 0.0]]), rc) == (
        "weight[0, 0] = -0.5 must be >= 0 (excitatory / positive sign) (1 such weights)"
    )
    assert find_violation(np.array([[0.5, 0.5, 0.0]]), rc) == (
        "weight[0, 1] = 0.5 must be <= 0 (inhibitory / negative sign) (1 such weights)"
    )
    assert find_violation(np.array([[1.5, -3.0, 0.0]]), rc) == (
        "weight[0, 0] = 1.5 is outside its bounds [0, 1] (2 such weights)"
    )
    # Zero is allowed for either sign.
    assert find_violation(np.zeros((1, 3)), rc) is None


# ----------------------------------------------------------------------------- Dale's law and balance
@SETTINGS
@given(size=st.integers(1, 200), fraction=st.floats(0.0, 1.0))
def test_dales_law_from_fraction(size: int, fraction: float) -> None:
    dale = DalesLaw.from_fraction(size, fraction)
    assert dale.sign.shape == (size,) and dale.sign.dtype == np.int8
    assert dale.n_excitatory + dale.n_inhibitory == size
    assert abs(dale.n_excitatory - fraction * size) <= 0.5
    assert np.all(np.diff(dale.sign) <= 0), "excitatory neurons come first"
    assert dale.describe() == f"Dale {dale.n_excitatory}E/{dale.n_inhibitory}I"


def test_dales_law_edge_fractions_and_errors() -> None:
    np.testing.assert_array_equal(DalesLaw.from_fraction(4, 0.0).sign, [-1] * 4)
    np.testing.assert_array_equal(DalesLaw.from_fraction(4, 1.0).sign, [1] * 4)
    np.testing.assert_array_equal(DalesLaw.from_fraction(5, 0.8).sign, [1, 1, 1, 1, -1])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValidationError, match="excitatory_fraction"):
            DalesLaw.from_fraction(4, bad)
    with pytest.raises(ValidationError, match="DalesLaw.sign"):
        DalesLaw([1, 0, -1])
    with pytest.raises(ValidationError, match="DalesLaw.sign"):
        DalesLaw([])


def drives(w: np.ndarray, sign: np.ndarray, rates: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    r = np.ones(w.shape[1]) if rates is None else np.asarray(rates)
    exc = sign > 0
    return w[:, exc] @ r[exc], w[:, ~exc] @ r[~exc]


@SETTINGS
@given(n_pre=st.integers(2, 12), n_post=st.integers(1, 8), frac=st.floats(0.1, 0.9), seed=st.integers(0, 2**31 - 1),
       with_rates=st.booleans(), p=st.one_of(st.none(), st.floats(0.3, 1.0)))
def test_balanced_init_cancels_per_row(n_pre: int, n_post: int, frac: float, seed: int, with_rates: bool,
                                       p: Optional[float]) -> None:
    dale = DalesLaw.from_fraction(n_pre, frac)
    if dale.n_excitatory == 0 or dale.n_inhibitory == 0:
        dale = DalesLaw(np.where(np.arange(n_pre) == 0, 1, -1))
    rates = np.random.default_rng(seed).uniform(0.1, 20.0, n_pre) if with_rates else None
    g = Graph("bal", seed=seed)
    g.population("e", LIF(tau_mem=0.02), n_pre, excitatory=dale.sign)
    g.population("t", LIF(tau_mem=0.02), n_post)
    try:
        proj = g.dense("e", "t", p=p, balanced=True if rates is None else rates)
    except ConstraintError as exc:  # a row with only E or only I synapses cannot be balanced
        assert p is not None and "BalancedInit" in str(exc) and "postsynaptic neuron" in str(exc)
        return
    w = g[proj].weight
    e, i = drives(w, dale.sign, rates)
    silent = e == 0  # rows that receive no synapse at all (p < 1) stay zero
    assert np.all(w[silent] == 0) and (p is not None or not silent.any())
    assert np.all(e[~silent] > 0) and np.all(i[~silent] < 0)
    np.testing.assert_allclose(e + i, 0.0, atol=1e-12)
    assert find_violation(w, resolve(proj, g[proj], dale, False)) is None
    assert any(isinstance(c, BalancedInit) for c in g[proj].constraints)


def test_balance_ei_direct() -> None:
    w = np.array([[1.0, 2.0, -1.0, -3.0], [0.5, 0.0, -0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    sign = np.array([1, 1, -1, -1])
    rates = np.array([2.0, 1.0, 4.0, 0.5])
    out = balance_ei(w, sign, rates)
    e, i = drives(out, sign, rates)
    np.testing.assert_allclose(e + i, 0.0, atol=1e-12)
    np.testing.assert_array_equal(out[:, :2], w[:, :2])  # excitatory weights untouched
    np.testing.assert_array_equal(out[2], 0.0)  # a row without input stays zero
    with pytest.raises(ConstraintError, match=r"Projection 'a->b'\.BalancedInit: postsynaptic neuron 0"):
        balance_ei(np.array([[1.0, 0.0]]), np.array([1, -1]), node_id="a->b")


def test_balanced_init_survives_to_graph_roundtrip() -> None:
    """Balance is an initialisation property: the compiled module starts balanced."""
    g = Graph("bal")
    g.input("x", 10, excitatory=0.7)
    g.population("p", LIF(tau_mem=0.02), 5)
    g.dense("x", "p", balanced=True)
    g.output("y", "p")
    module = ntgraph.compile(g, "torch", dt=DT, dtype=torch.float64)
    w = module.projections["x->p"].effective_weight().detach().numpy()
    e, i = drives(w, g["x"].dale.sign, None)
    np.testing.assert_allclose(e + i, 0.0, atol=1e-12)
    assert module.to_graph() == g


# ----------------------------------------------------------------------------- learnable neuron parameters
@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("push", [-5.0, -1e-9, 0.0])
def test_learnable_parameters_stay_valid(kind: str, push: float) -> None:
    """Whatever value an update gives a learnable time constant or non-negative parameter,
    the dynamics use a valid one and ``to_graph()`` writes a valid one back."""
    make, learnable = MODELS[kind]
    g = Graph("learn")
    g.input("x", 3)
    g.population("p", make(np.random.default_rng(0)), 4, learnable=learnable)
    g.dense("x", "p")
    g.output("y", "p")
    module = ntgraph.compile(g, "torch", dt=DT)
    with torch.no_grad():
        for name in learnable:
            getattr(module.populations["p"], name).fill_(push)
    result = module(torch.ones(4, 1, 3))
    assert torch.all(torch.isfinite(result["y"]))
    g2 = module.to_graph()
    ntgraph.validate(g2, dt=DT)
    model = g2["p"].model
    for name in learnable:
        value = np.asarray(getattr(model, name))
        if name in TAU_NAMES:
            assert np.all(value >= DT)
        if model.param_info(name)["nonnegative"]:
            assert np.all(value >= 0)
