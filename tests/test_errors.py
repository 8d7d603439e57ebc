"""Every bad input and its message, as one table.

Each row makes one bad input and names the exception class it must raise and
the substrings its message must contain: the node id, the attribute, the bad
value and what was expected (DESIGN.md, "Errors").  Every error must also be an
:class:`ntgraph.NtgraphError` and the builtin exception that fits, so callers
that only know ``ValueError`` / ``TypeError`` / ``LookupError`` still catch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

import ntgraph
import backends.torchsim as torchsim
from ntgraph import (
    ALIF,
    LI,
    LIF,
    BackendNotFoundError,
    ConstraintError,
    CycleError,
    DalesLaw,
    Graph,
    NeuronModel,
    NtgraphError,
    RateUnit,
    ShapeError,
    UnsupportedNodeError,
    ValidationError,
    WeightBounds,
)
from ntgraph._data import frozen_array, param
from ntgraph.constraints import ConnectivityMask, SignMask
from ntgraph.ir import Dense, Node, Projection

DT = 1e-3


# ----------------------------------------------------------------------------- helpers
def small(name: str = "net") -> Graph:
    """x (256) -> hid (20, LIF) -> out (4, LI); Output y <- out.  Valid."""
    g = Graph(name)
    g.input("x", 256)
    g.population("hid", LIF(tau_mem=20e-3), 20)
    g.population("out", LI(tau_mem=10e-3), 4)
    g.dense("x", "hid")
    g.dense("hid", "out")
    g.output("y", "out")
    return g


def two_inputs():
    """A compiled module with two Inputs: x (4 channels) and u (2 channels)."""
    g = Graph("two")
    g.input("x", 4)
    g.input("u", 2)
    g.population("hid", LIF(tau_mem=20e-3), 5)
    g.dense("x", "hid")
    g.dense("u", "hid")
    g.output("y", "hid")
    return ntgraph.compile(g, "torch", dt=DT)


MODULE = two_inputs()
X_OK = torch.zeros(10, 2, 4)
U_OK = torch.zeros(10, 2, 2)


def builder() -> Graph:
    """Input x (4), populations p (4), q (3), e (4, half excitatory), no projections yet."""
    g = Graph("b")
    g.input("x", 4)
    g.population("p", LIF(tau_mem=20e-3), 4)
    g.population("q", LIF(tau_mem=20e-3), 3)
    g.population("e", LIF(tau_mem=20e-3), 4, excitatory=0.5)
    return g


def wrong_weight_shape(check: Callable[[Graph], Any]) -> Callable[[], Any]:
    def make() -> None:
        g = Graph("t")
        g.input("x", 256)
        g.population("hid", LIF(tau_mem=20e-3), 20)
        g.add("x->hid", Dense(weight=np.zeros((256, 20))), source="x", target="hid")
        g.output("y", "hid")
        check(g)

    return make


def instant_cycle() -> None:
    g = Graph("loop")
    g.input("x", 3)
    g.population("a", LIF(tau_mem=20e-3), 3)
    g.population("b", LIF(tau_mem=20e-3), 3)
    g.dense("x", "a")
    g.dense("a", "b", delay=0)
    g.dense("b", "a", delay=0)
    g.output("y", "b")
    ntgraph.validate(g)


def with_tau(tau: float, *, compile: bool = False) -> Callable[[], Any]:
    def make() -> None:
        g = Graph("tau")
        g.input("x", 3)
        g.population("pop", LIF(tau_mem=tau), 3)
        g.dense("x", "pop")
        g.output("y", "pop")
        if compile:
            ntgraph.compile(g, "torch", dt=DT)
        else:
            ntgraph.validate(g)

    return make


def nan_weight() -> None:
    g = Graph("nan")
    g.input("x", 3)
    g.population("pop", LIF(tau_mem=20e-3), 3)
    w = np.ones((3, 3))
    w[1, 2] = np.nan
    g.add("x->pop", Dense(weight=w), source="x", target="pop")
    g.output("y", "pop")
    ntgraph.compile(g, "torch", dt=DT)


@dataclass(frozen=True, eq=False, kw_only=True)
class Mystery(Node):
    """A node type no part of ntgraph knows."""

    size: int = 3


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv(Projection):
    """A projection type the torch backend has no lowering for."""

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
class Izhikevich(NeuronModel):
    """A neuron model the torch backend has no dynamics for."""

    tau: Any = param(20e-3, unit="s", positive=True)
    output_var = "v"
    state_vars = ("v",)


def unknown_node_validate() -> None:
    g = small()
    g.add("myst", Mystery())
    ntgraph.compile(g, "torch", dt=DT)


def unknown_projection_compile() -> None:
    g = small()
    g.add("conv", Conv(weight=np.zeros((20, 256))), source="x", target="hid")
    ntgraph.compile(g, "torch", dt=DT)


def unknown_model_compile() -> None:
    g = Graph("izh")
    g.input("x", 3)
    g.population("izh", Izhikevich(), 3)
    g.dense("x", "izh")
    g.output("y", "izh")
    ntgraph.compile(g, "torch", dt=DT)


def sign_against_dale() -> None:
    g = builder()
    g.dense("e", "q", sign=np.tile([1, -1, -1, -1], (3, 1)))  # column 1 is excitatory, the mask says -1


def low_level_violation(payload: Dense, dale: Any = None, check: str = "validate") -> Callable[[], Any]:
    def make() -> None:
        g = Graph("low")
        g.input("x", 3, excitatory=dale)
        g.population("pop", LIF(tau_mem=20e-3), 3)
        g.add("x->pop", payload, source="x", target="pop")
        g.output("y", "pop")
        if check == "validate":
            ntgraph.validate(g)
        else:
            ntgraph.compile(g, "torch", dt=DT)

    return make


def no_output() -> None:
    g = Graph("headless")
    g.input("x", 3)
    g.population("pop", LIF(tau_mem=20e-3), 3)
    g.dense("x", "pop")
    ntgraph.compile(g, "torch", dt=DT)


def output_size_mismatch() -> None:
    g = Graph("o")
    g.input("x", 3)
    g.population("pop", LIF(tau_mem=20e-3), 3)
    g.dense("x", "pop")
    g.add("y", ntgraph.Output(size=5), source="pop")
    ntgraph.validate(g)


def compile_small(**kw: Any) -> Callable[[], Any]:
    return lambda: ntgraph.compile(small(), **kw)


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    make: Callable[[], Any]
    exc: type
    parts: list
    builtin: type = ValueError


CASES = [
    # --- shapes -------------------------------------------------------------------------
    Case("weight-shape-validate", wrong_weight_shape(ntgraph.validate), ShapeError,
         ["'x->hid'", ".weight", "expected shape (20, 256)", "got (256, 20)"]),
    Case("weight-shape-compile", wrong_weight_shape(lambda g: ntgraph.compile(g, "torch", dt=DT)), ShapeError,
         ["'x->hid'", ".weight", "expected shape (20, 256)", "got (256, 20)"]),
    Case("weight-shape-builder", lambda: builder().dense("x", "p", weight=np.zeros((3, 4))), ShapeError,
         ["'x->p'", ".weight", "(4, 4)", "(3, 4)"]),
    Case("bias-shape-builder", lambda: builder().dense("x", "p", bias=np.zeros(3)), ShapeError,
         ["'x->p'", "bias", "expected shape (4,)", "got (3,)"]),
    Case("output-size", output_size_mismatch, ShapeError, ["'y'", ".size", "expected 3", "got 5"]),
    # --- cycles ------------------------------------------------------------------------
    Case("instant-cycle", instant_cycle, CycleError, ["a -> a->b -> b -> b->a -> a", "delay 0", "delay >= 1"]),
    # --- time constants ------------------------------------------------------------------
    Case("dt-above-tau", lambda: ntgraph.compile(small(), "torch", dt=0.05), ValidationError,
         ["'hid'", "tau_mem", "dt=0.05", "0.02", "expected dt <= tau_mem"]),
    Case("tau-nan", with_tau(float("nan")), ValidationError, ["'pop'", "tau_mem", "nan", "positive finite"]),
    Case("tau-negative", with_tau(-0.01, compile=True), ValidationError,
         ["'pop'", "tau_mem", "-0.01", "positive finite"]),
    Case("tau-zero", with_tau(0.0), ValidationError, ["'pop'", "tau_mem", "got 0", "positive finite"]),
    Case("beta-negative", lambda: ntgraph.validate(_graph_with(ALIF(tau_mem=0.02, tau_adapt=0.2, beta=-1.0))),
         ValidationError, ["'pop'", "beta", "-1", "non-negative"]),
    Case("per-neuron-length", lambda: builder().population("r", LIF(tau_mem=np.full(4, 0.02)), 3), ValidationError,
         ["'r'", "tau_mem", "shape (4,)", "3 values (one per neuron)"]),
    # --- weights -----------------------------------------------------------------------
    Case("weight-nan", nan_weight, ValidationError, ["'x->pop'", ".weight", "nan", "finite values"]),
    # --- node types --------------------------------------------------------------------
    # validate() is backend-independent and rejects node types outside the IR before any backend sees them.
    Case("unknown-node-type", unknown_node_validate, ValidationError, ["'myst'", "Mystery", "expected an Input"]),
    # A new Projection subclass passes validation; the torch backend has no lowering for it.
    Case("unknown-projection-type", unknown_projection_compile, UnsupportedNodeError,
         ["'torch'", "'conv'", "Conv", "supported:", "Dense"], TypeError),
    Case("lowering-lookup", lambda: torchsim.LOWERINGS.lookup(Mystery(), "myst"), UnsupportedNodeError,
         ["'torch'", "'myst'", "Mystery", "supported:"], TypeError),
    Case("unknown-neuron-model", unknown_model_compile, UnsupportedNodeError,
         ["'torch'", "'izh'", "Izhikevich", "supported:", "LIF"], TypeError),
    # --- run-time inputs ---------------------------------------------------------------
    Case("input-feature-size", lambda: MODULE(torch.zeros(10, 2, 3), U_OK), ShapeError,
         ["'x'", "[T, batch, 4]", "(10, 2, 3)"]),
    Case("input-2d", lambda: MODULE(torch.zeros(10, 4), U_OK), ShapeError, ["'x'", "[T, batch, 4]", "(10, 4)"]),
    Case("input-T-mismatch", lambda: MODULE(X_OK, torch.zeros(11, 2, 2)), ShapeError,
         ["'u'", "(T, batch)", "(11, 2)", "expected (10, 2)"]),
    Case("input-count", lambda: MODULE(X_OK), ValidationError, ["inputs", "expected 2", "['x', 'u']", "got 1"]),
    Case("input-unknown-key", lambda: MODULE({"x": X_OK, "u": U_OK, "z": X_OK}), ValidationError,
         ["inputs", "unknown: ['z']", "['x', 'u']"]),
    Case("input-missing-key", lambda: MODULE({"x": X_OK}), ValidationError, ["inputs", "missing: ['u']"]),
    # --- records -----------------------------------------------------------------------
    Case("record-unknown-name", lambda: MODULE(X_OK, U_OK, record=["nope"]), ValidationError,
         ["record 'nope'", "population id", "hid"]),
    Case("record-unknown-variable", lambda: MODULE(X_OK, U_OK, record=["hid.w"]), ValidationError,
         ["'hid.w'", "'hid'", "'w'", "spikes, v"]),
    Case("record-at-compile", compile_small(target="torch", dt=DT, record=["out.spikes"]), ValidationError,
         ["'out'", "'spikes'", "expected one of v"]),
    # --- compile options ---------------------------------------------------------------
    Case("dt-zero", compile_small(target="torch", dt=0), ValidationError, ["dt", "got 0", "positive finite"]),
    Case("dt-negative", compile_small(target="torch", dt=-1e-3), ValidationError, ["dt", "-0.001", "positive"]),
    Case("dt-none", compile_small(target="torch", dt=None), ValidationError, ["dt", "required", "seconds"]),
    Case("dt-missing", compile_small(target="torch"), ValidationError, ["dt", "required"]),
    Case("dt-nan", compile_small(target="torch", dt=float("nan")), ValidationError, ["dt", "nan", "finite"]),
    Case("discretization", compile_small(target="torch", dt=DT, discretization="rk4"), ValidationError,
         ["discretization", "'rk4'", "'euler', 'exact'"]),
    Case("timing", compile_small(target="torch", dt=DT, timing="async"), ValidationError,
         ["timing", "'async'", "'sync', 'pipelined'"]),
    Case("backend-option", compile_small(target="torch", dt=DT, colour="red"), ValidationError,
         ["torch backend", "'colour'", "batch_first"]),
    Case("backend-surrogate", compile_small(target="torch", dt=DT, surrogate="relu"), ValidationError,
         ["surrogate", "'relu'", "Surrogate"]),
    Case("unknown-target", compile_small(target="loihi9", dt=DT), BackendNotFoundError,
         ["'loihi9'", "no such backend", "'torch'"], LookupError),
    # --- builder -----------------------------------------------------------------------
    Case("duplicate-id", lambda: builder().population("p", LI(tau_mem=0.02), 3), ValidationError,
         ["'p'", "already exists", "Population"]),
    Case("bad-id", lambda: builder().input(" x", 3), ValidationError, ["node id", "' x'", "non-empty string"]),
    Case("unknown-source", lambda: builder().dense("nope", "p"), ValidationError,
         ["'nope->p'", ".source", "no node 'nope'", "'b'"]),
    Case("unknown-target-node", lambda: builder().dense("x", "nope"), ValidationError,
         ["'x->nope'", ".target", "no node 'nope'"]),
    Case("projection-into-input", lambda: builder().dense("p", "x"), ValidationError,
         ["'p->x'", ".target", "expected a Population", "Input 'x'"]),
    Case("output-unknown-source", lambda: builder().output("o", "nope"), ValidationError,
         ["'o'", ".source", "no node 'nope'"]),
    Case("one-to-one-sizes", lambda: builder().one_to_one("x", "q"), ValidationError,
         ["'x->q'", "'x' has 4", "'q' has 3", "equal sizes"]),
    Case("one-to-one-weight-length", lambda: builder().one_to_one("x", "p", weight=[1.0, 2.0]), ShapeError,
         ["'x->p'", ".weight", "(4, 4)", "(2,)"]),
    Case("p-above-1", lambda: builder().dense("x", "p", p=1.5), ValidationError,
         ["'x->p'", ".p", "1.5", "(0, 1]"]),
    Case("p-zero", lambda: builder().dense("x", "p", p=0), ValidationError, ["'x->p'", ".p", "got 0", "(0, 1]"]),
    Case("sparse-p", lambda: builder().sparse("x", "p", p=-0.1), ValidationError, ["'x->p'", ".p", "-0.1", "(0, 1]"]),
    Case("p-and-mask", lambda: builder().dense("x", "p", p=0.5, mask=np.ones((4, 4), bool)), ValidationError,
         ["'x->p'", "either p or mask"]),
    Case("init", lambda: builder().dense("x", "p", init="xavier"), ValidationError,
         ["'x->p'", ".init", "'xavier'", "'normal'"]),
    Case("delay-negative", lambda: builder().dense("x", "p", delay=-1), ValidationError,
         ["'x->p'", "delay", "-1", "non-negative integer"]),
    Case("size-zero", lambda: builder().input("z", 0), ValidationError, ["'z'", "size", "got 0", "positive integer"]),
    Case("learnable-unknown", lambda: builder().population("r", LIF(tau_mem=0.02), 3, learnable=("tau",)),
         ValidationError, ["'r'", "learnable", "'tau'", "tau_mem"]),
    # Neuron models are built before the population that owns them: their errors name the model class.
    Case("reset-foo", lambda: builder().population("r", LIF(tau_mem=0.02, reset="foo"), 3), ValidationError,
         ["LIF.reset", "'foo'", "'zero', 'subtract'"]),
    Case("activation-relu", lambda: RateUnit(activation="relu"), ValidationError,
         ["RateUnit.activation", "'relu'", "'sigmoid', 'tanh'"]),
    # --- constraints -------------------------------------------------------------------
    Case("dale-values", lambda: builder().population("r", LIF(tau_mem=0.02), 3, excitatory=[1, 0, -1]),
         ValidationError, ["'r'", "DalesLaw.sign", "+1", "-1", "[ 1,  0, -1]"]),
    Case("dale-values-input", lambda: builder().input("r", 3, excitatory=[1, 2, -1]), ValidationError,
         ["'r'", "DalesLaw.sign", "2"]),
    Case("dale-fraction", lambda: builder().input("r", 3, excitatory=1.5), ValidationError,
         ["'r'", "excitatory_fraction", "1.5", "[0, 1]"]),
    Case("dale-length", lambda: builder().population("r", LIF(tau_mem=0.02), 3, excitatory=[1, -1]),
         ConstraintError, ["'r'", "DalesLaw", "2 signs", "expected 3"]),
    Case("dale-on-projection",
         low_level_violation(Dense(weight=np.ones((3, 3)), constraints=(DalesLaw([1, 1, 1]),))), ConstraintError,
         ["'x->pop'", "DalesLaw", "presynaptic"]),
    Case("sign-mask-vs-dale", sign_against_dale, ConstraintError,
         ["'e->q'", "SignMask", "sign -1", "synapse (0, 1)", "Dale", "sign 1"]),
    Case("sign-mask-values", lambda: builder().dense("x", "p", sign=np.full((4, 4), 2)), ValidationError,
         ["'x->p'", "SignMask.sign", "-1, 0 and +1", "value 2"]),
    Case("sign-mask-shape", lambda: builder().dense("x", "p", sign=np.ones((2, 2))), ConstraintError,
         ["'x->p'", "SignMask.sign", "expected shape (4, 4)", "got (2, 2)"]),
    Case("mask-values", lambda: builder().dense("x", "p", mask=np.full((4, 4), 3)), ValidationError,
         ["'x->p'", "ConnectivityMask.mask", "boolean", "value 3"]),
    Case("mask-shape", lambda: builder().dense("x", "p", mask=np.ones((2, 2), bool)), ConstraintError,
         ["'x->p'", "ConnectivityMask.mask", "expected shape (4, 4)", "got (2, 2)"]),
    Case("no-self-not-recurrent", lambda: builder().dense("x", "p", no_self=True), ConstraintError,
         ["'x->p'", "NoSelfConnections", "from a node to itself"]),
    Case("bounds-low-above-high", lambda: builder().dense("x", "p", bounds=(1.0, -1.0)), ValidationError,
         ["'x->p'", "WeightBounds", "low=1.0", "high=-1.0", "low <= high"]),
    Case("bounds-not-a-pair", lambda: builder().dense("x", "p", bounds=3), ValidationError,
         ["'x->p'", "bounds", "got 3", "pair"]),
    Case("bounds-vs-dale", lambda: builder().dense("e", "q", bounds=(0.5, 1.0)), ConstraintError,
         ["'e->q'", "WeightBounds", "sign -1", "[0.5, 0]"]),
    Case("balanced-without-dale", lambda: builder().dense("x", "p", balanced=True), ValidationError,
         ["'x->p'", "BalancedInit", "Dale's law", "'x'"]),
    Case("balanced-pre-rates-length", lambda: builder().dense("e", "q", balanced=[1.0, 2.0, 3.0]), ValidationError,
         ["'e->q'", "pre_rates", "expected shape (4,)", "got (3,)"]),
    Case("balanced-pre-rates-negative", lambda: builder().dense("e", "q", balanced=[1.0, -2.0, 3.0, 1.0]),
         ValidationError, ["'e->q'", "pre_rates", "-2", "non-negative"]),
    Case("balanced-infeasible", lambda: _all_excitatory().dense("all_e", "q", balanced=True), ConstraintError,
         ["'all_e->q'", "BalancedInit", "postsynaptic neuron 0", "inhibitory drive 0"]),
    # --- whole graphs ------------------------------------------------------------------
    Case("empty-graph", lambda: ntgraph.validate(Graph("void")), ValidationError, ["'void'", "empty", "Output"]),
    Case("empty-graph-compile", lambda: ntgraph.compile(Graph("void"), "torch", dt=DT), ValidationError,
         ["'void'", "empty"]),
    Case("no-output", no_output, ValidationError, ["'headless'", "no Output", "graph.output"]),
    Case("not-a-graph", lambda: ntgraph.validate({"x": 1}), ValidationError, ["graph", "Graph", "dict"]),
    # --- weights that break constraints, added behind the builder's back ----------------
    Case("low-level-dale", low_level_violation(Dense(weight=-np.ones((3, 3))), dale=1.0), ConstraintError,
         ["'x->pop'", ".weight", "weight[0, 0] = -1", ">= 0", "9 such weights"]),
    Case("low-level-bounds",
         low_level_violation(Dense(weight=np.full((3, 3), 5.0), constraints=(WeightBounds(-1, 1),)), check="compile"),
         ConstraintError, ["'x->pop'", ".weight", "= 5", "outside its bounds [-1, 1]"]),
    Case("low-level-mask",
         low_level_violation(Dense(weight=np.ones((3, 3)), constraints=(ConnectivityMask(np.eye(3, dtype=bool)),))),
         ConstraintError, ["'x->pop'", ".weight", "weight[0, 1] = 1", "absent synapse", "exactly 0"]),
    Case("low-level-sign",
         low_level_violation(Dense(weight=np.ones((3, 3)), constraints=(SignMask(-np.eye(3)),))),
         ConstraintError, ["'x->pop'", ".weight", "weight[0, 0] = 1", "<= 0"]),
]


def _graph_with(model: NeuronModel) -> Graph:
    g = Graph("m")
    g.input("x", 3)
    g.population("pop", model, 3)
    g.dense("x", "pop")
    g.output("y", "pop")
    return g


def _all_excitatory() -> Graph:
    g = builder()
    g.population("all_e", LIF(tau_mem=0.02), 4, excitatory=1.0)
    return g


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_raises_clear_error(case: Case) -> None:
    with pytest.raises(NtgraphError) as info:
        case.make()
    err = info.value
    assert type(err) is case.exc, f"{case.id}: expected {case.exc.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, case.builtin)
    message = str(err)
    missing = [p for p in case.parts if p not in message]
    assert not missing, f"{case.id}: message lacks {missing}: {message!r}"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_hierarchy() -> None:
    """Every error class derives from NtgraphError and the builtin that fits."""
    assert issubclass(ValidationError, ValueError)
    for cls in (ShapeError, CycleError, ConstraintError):
        assert issubclass(cls, ValidationError)
    assert issubclass(ntgraph.FileFormatError, ValueError)
    assert issubclass(UnsupportedNodeError, TypeError)
    assert issubclass(BackendNotFoundError, LookupError)
    for cls in (ValidationError, ShapeError, CycleError, ConstraintError, ntgraph.FileFormatError,
                UnsupportedNodeError, BackendNotFoundError):
        assert issubclass(cls, NtgraphError)


def test_builtin_except_clauses_catch() -> None:
    """Callers that know only the builtins still catch ntgraph's errors."""
    with pytest.raises(ValueError):
        ntgraph.compile(small(), "torch", dt=-1.0)
    with pytest.raises(LookupError):
        ntgraph.compile(small(), "no-such-target", dt=DT)
    with pytest.raises(TypeError):
        torchsim.LOWERINGS.lookup(Mystery(), "myst")


def test_subclass_of_supported_projection_lowers_like_its_parent() -> None:
    """The lowering table follows the MRO: a Dense subclass is not an unsupported node."""

    @dataclass(frozen=True, eq=False, kw_only=True)
    class TaggedDense(Dense):
        pass

    g = small()
    g.add("extra", TaggedDense(weight=np.zeros((20, 256))), source="x", target="hid")
    module = ntgraph.compile(g, "torch", dt=DT)
    assert "extra" in module.projections


def test_errors_are_raised_before_any_change() -> None:
    """A rejected builder call leaves the graph as it was."""
    g = builder()
    before = g.copy()
    for bad in (lambda: g.dense("x", "p", p=2.0), lambda: g.dense("x", "p", weight=np.zeros((3, 4))),
                lambda: g.dense("x", "p", bounds=(1, 0)), lambda: g.population("p", LIF(tau_mem=0.02), 2)):
        with pytest.raises(ValidationError):
            bad()
    assert g == before
