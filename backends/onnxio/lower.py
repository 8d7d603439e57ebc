"""Lowering a prepared ntgraph graph to one ONNX model, in step or sequence mode.

The step is the one of ``docs/semantics.md`` and of the torch backend's time
loop (``backends/torchsim/module.py``): populations in the scheduled order,
each summing first its projections from Inputs, then its projections from
populations (delay 0: this step's output; delay ``d``: the output of step
``t - d`` from the source's delay line), then stepping its neuron model.

**Step mode** exports that step as a pure function
``(inputs_t, state_t) -> (outputs_t, records_t, state_{t+1})``.  The state is
every population's carried variables (``state.<pop>.<var>``, ``[batch, n]``)
and every delay line (``delay.<node>``, ``[D, batch, n]``, the node's outputs
of steps ``t-D .. t-1``, oldest first); each has a ``.next`` output.

**Sequence mode** puts the time loop inside the model: one ONNX ``Scan`` over
the time axis whose body is the same step (minus the Input projections, which
are applied to the whole sequence at once before the loop, as the torch
backend does).  Time and batch are dynamic; the model's size does not depend
on ``T``.  With ``state_io=True`` the initial state is a graph input and the
final state a graph output, for running a long input in chunks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from ntgraph import __version__
from ntgraph.compiler import CompileOptions
from ntgraph.errors import ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Input, Output, Population, Projection
from ntgraph.registry import LoweringTable

from .builder import FLOAT_TYPES, INT64_MAX, GraphBuilder, ModelContext
from .names import sanitize
from .neurons import NEURON_LOWERINGS, NeuronLowering
from .projections import PROJECTION_LOWERINGS, ProjectionLowering

__all__ = [
    "LOWERINGS",
    "ExportOptions",
    "lower_graph",
    "MODES",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "INTERFACE_KEY",
    "INTERFACE_VERSION",
]

#: IR type -> lowering class (neuron models -> NeuronLowering, projections -> ProjectionLowering).
LOWERINGS = LoweringTable("onnx")
for _cls in NEURON_LOWERINGS:
    LOWERINGS.register(_cls.model_type)(_cls)
for _pcls in PROJECTION_LOWERINGS:
    LOWERINGS.register(_pcls.ir_type)(_pcls)
LOWERINGS.register(Input, Output)(None)

MODES = ("step", "sequence")
SPARSE_MODES = ("dense", "scatter")
#: Opset 17: onnxruntime >= 1.13, TensorRT >= 8.5.
DEFAULT_OPSET = 17
#: Unsqueeze with axes as an input (13) is the oldest form the emitter writes.
MIN_OPSET = 13
#: metadata_props key of the JSON that describes inputs, outputs, records and state.
INTERFACE_KEY = "ntgraph_interface"
INTERFACE_VERSION = 1


@dataclass(frozen=True)
class ExportOptions:
    """Options of the ONNX backend (``CompileOptions.extra``, ``--set KEY=VALUE`` on the command line).

    ``mode``: ``"step"`` (one step, explicit state) or ``"sequence"`` (Scan over
    time).  ``dtype``: ``"float32"`` or ``"float64"``.  ``opset``: the ONNX
    opset (13 up to the installed onnx's newest).  ``record``: extra outputs
    ``"pop"`` or ``"pop.var"`` (the torch backend's probe syntax).
    ``state_io`` (sequence mode): initial state as inputs, final state as outputs.
    ``sparse``: ``"dense"`` (MatMul) or ``"scatter"`` (Gather/ScatterElements, opset >= 16).
    """

    mode: str = "step"
    dtype: str = "float32"
    opset: int = DEFAULT_OPSET
    record: tuple[str, ...] = ()
    state_io: bool = False
    sparse: str = "dense"

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> "ExportOptions":
        """Parse and check backend options, raising :class:`ValidationError` naming the bad one."""
        names = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(extra) - set(names))
        if unknown:
            raise ValidationError(f"onnx backend: unknown option(s) {unknown}; expected some of {names}")
        opts = dict(extra)
        mode = opts.get("mode", "step")
        if mode not in MODES:
            raise ValidationError(f"onnx backend option mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
        dtype = _dtype_name(opts.get("dtype", "float32"))
        opset = opts.get("opset", DEFAULT_OPSET)
        newest = onnx.defs.onnx_opset_version()
        if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= int(opset) <= newest:
            raise ValidationError(
                f"onnx backend option opset: expected an integer from {MIN_OPSET} to {newest} (the installed onnx's newest), "
                f"got {opset!r}"
            )
        record = opts.get("record", ())
        record = (record,) if isinstance(record, str) else tuple(record or ())
        for spec in record:
            if not isinstance(spec, str):
                raise ValidationError(f"onnx backend option record: expected strings 'pop' or 'pop.var', got {spec!r}")
        state_io = opts.get("state_io", False)
        if not isinstance(state_io, (bool, np.bool_)):
            raise ValidationError(f"onnx backend option state_io: expected True or False, got {state_io!r}")
        sparse = opts.get("sparse", "dense")
        if sparse not in SPARSE_MODES:
            raise ValidationError(
                f"onnx backend option sparse: expected one of {', '.join(map(repr, SPARSE_MODES))}, got {sparse!r}"
            )
        if sparse == "scatter" and int(opset) < 16:
            raise ValidationError(
                f"onnx backend option sparse='scatter': needs ScatterElements with reduction='add' (opset >= 16), "
                f"got opset {int(opset)}"
            )
        return cls(mode=mode, dtype=dtype, opset=int(opset), record=record, state_io=bool(state_io), sparse=sparse)


def _dtype_name(dtype: Any) -> str:
    """``"float32"``/``"float64"`` from a name, a numpy dtype or type, or a torch dtype."""
    name = dtype
    if not isinstance(dtype, str):
        try:
            name = np.dtype(dtype).name
        except TypeError:  # e.g. torch.float64
            name = str(dtype).replace("torch.", "")
    try:
        name = np.dtype(name).name
    except TypeError:
        pass
    if name not in FLOAT_TYPES:
        raise ValidationError(f"onnx backend option dtype: expected 'float32' or 'float64', got {dtype!r}")
    return name


# ----------------------------------------------------------------------------- the plan of one step
class _Plan:
    """Which projections feed which population, with which delay, and the delay lines (as in the torch module)."""

    def __init__(self, graph: Graph) -> None:
        self.order: list[str] = list(graph.attrs["order"])
        is_input = {n: isinstance(graph[n], Input) for n in graph}
        incoming = {p: [(proj, src, int(d)) for proj, src, d in graph.meta(p)["incoming"]] for p in self.order}
        self.input_projs: dict[str, list[tuple[str, str, int]]] = {
            p: [e for e in entries if is_input[e[1]]] for p, entries in incoming.items()}
        self.pop_projs: dict[str, list[tuple[str, str, int]]] = {
            p: [e for e in entries if not is_input[e[1]]] for p, entries in incoming.items()}
        self.history_len: dict[str, int] = dict(graph.attrs["history"])
        #: Nodes with a delay line, in graph order.
        self.delayed: list[str] = list(self.history_len)

    def has_current(self, pop: str) -> bool:
        return bool(self.input_projs[pop] or self.pop_projs[pop])


@dataclass
class _State:
    """One state tensor of the interface (a neuron variable or a delay line)."""

    name: str
    next: str
    kind: str  # "neuron" or "delay"
    node: str
    var: str
    size: int
    length: int = 0  # delay lines: D
    initial: Optional[np.ndarray] = None  # neuron state at t=0, one value per neuron (delay lines start at 0)

    @property
    def shape(self) -> list:
        return [self.length, "batch", self.size] if self.kind == "delay" else ["batch", self.size]

    def describe(self) -> str:
        if self.kind == "delay":
            return (f"delay line of '{self.node}' ({self.var}): its outputs of steps t-{self.length} .. t-1, "
                    f"oldest first, [{self.length}, batch, {self.size}]; zeros at t=0")
        return f"state variable {self.var} of population '{self.node}', [batch, {self.size}]"

    def to_json(self) -> dict:
        entry: dict[str, Any] = {"name": self.name, "next": self.next, "kind": self.kind, "node": self.node,
                                 "var": self.var, "shape": self.shape}
        if self.kind == "delay":
            entry["length"] = self.length
            entry["initial"] = 0.0
        else:
            init = np.asarray(self.initial, dtype=np.float64)
            entry["initial"] = float(init[0]) if np.all(init == init[0]) else [float(v) for v in init]
        return entry


@dataclass
class _StepValues:
    now: dict[str, str] = field(default_factory=dict)  # population -> output tensor of this step
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # population -> var -> tensor
    next_state: dict[str, dict[str, str]] = field(default_factory=dict)  # population -> var -> tensor
    next_delay: dict[str, str] = field(default_factory=dict)  # node -> shifted delay line


def _emit_step(b: GraphBuilder, plan: _Plan, neurons: dict[str, NeuronLowering], projs: dict[str, ProjectionLowering],
               *, x: Optional[dict[str, str]], drive: Optional[dict[str, str]], state: dict[str, dict[str, str]],
               delay: dict[str, str], zeros: dict[str, str]) -> _StepValues:
    """Emit one time step into ``b``.

    ``x``: Input -> ``[batch, n]`` tensor of this step (step mode), or None
    when ``drive`` gives each population's summed Input current of this step
    (sequence mode).  ``delay``: node -> delay line ``[D, batch, n]``.
    """
    ctx = b.ctx
    out = _StepValues()
    delayed: dict[tuple[str, int], str] = {}

    def read(src: str, d: int, same_step: dict[str, str]) -> str:
        if d == 0:
            return same_step[src]
        if (src, d) not in delayed:
            length = plan.history_len[src]
            index = ctx.ints(f"index_{length - d}", length - d)
            delayed[(src, d)] = b.gather(delay[src], index, 0, f"{sanitize(src)}.delayed_{d}")
        return delayed[(src, d)]

    for pop in plan.order:
        sp = sanitize(pop)
        current = None
        if drive is not None:
            current = drive.get(pop)
        else:
            for proj, src, d in plan.input_projs[pop]:
                c = projs[proj].apply(b, read(src, d, x or {}))
                current = c if current is None else b.add(current, c, f"{sp}.I")
        for proj, src, d in plan.pop_projs[pop]:
            c = projs[proj].apply(b, read(src, d, out.now))
            current = c if current is None else b.add(current, c, f"{sp}.I")
        if current is None:
            current = zeros[pop]
        z, nxt, values = neurons[pop].step(b, current, state.get(pop, {}))
        out.now[pop], out.next_state[pop], out.values[pop] = z, nxt, values

    for src, line in delay.items():
        ss = sanitize(src)
        newest = b.unsqueeze(out.now[src] if src in out.now else (x or {})[src], 0, f"delay.{ss}.newest")
        length = plan.history_len[src]
        if length == 1:
            out.next_delay[src] = newest
        else:
            older = b.slice(line, 1, length, 0, f"delay.{ss}.older")
            out.next_delay[src] = b.concat([older, newest], 0, f"delay.{ss}.shifted")
    return out


# ----------------------------------------------------------------------------- the model
def _parse_record(graph: Graph, specs: Sequence[str]) -> list[tuple[str, str, str]]:
    """``"pop"`` or ``"pop.var"`` -> ``(key "pop.var", pop, var)``, with the torch backend's messages."""
    probes: list[tuple[str, str, str]] = []
    pops = graph.populations
    for spec in specs:
        if spec in pops:
            pop, var = spec, graph[spec].model.output_var
        elif "." in spec and spec.rsplit(".", 1)[0] in pops:
            pop, var = spec.rsplit(".", 1)
        else:
            raise ValidationError(
                f"record {spec!r}: expected a population id or 'population.variable'; populations: {', '.join(pops)}"
            )
        model = graph[pop].model
        if var not in model.recordable:
            raise ValidationError(
                f"record {spec!r}: Population '{pop}' ({type(model).__name__}) has no variable {var!r}; "
                f"expected one of {', '.join(model.recordable)}"
            )
        key = f"{pop}.{var}"
        if key not in (k for k, _, _ in probes):
            probes.append((key, pop, var))
    return probes


def lower_graph(graph: Graph, options: CompileOptions, export: ExportOptions) -> onnx.ModelProto:
    """The ONNX model of a prepared (validated, scheduled, constraint-resolved) graph."""
    if not graph.inputs:
        raise ValidationError(f"graph '{graph.name}': has no Input; an ONNX export needs at least one input tensor")
    ctx = ModelContext(export.dtype, export.opset)
    plan = _Plan(graph)

    neuron_cls: dict[str, type[NeuronLowering]] = {}
    proj_cls: dict[str, type[ProjectionLowering]] = {}
    for node_id, payload in graph.items():
        if isinstance(payload, Population):
            neuron_cls[node_id] = LOWERINGS.lookup(payload.model, node_id)
        elif isinstance(payload, Projection):
            proj_cls[node_id] = LOWERINGS.lookup(payload, node_id)
        else:
            LOWERINGS.lookup(payload, node_id)
    neurons = {p: cls(ctx, p, sanitize(p), graph[p], dt=options.dt, discretization=options.discretization)
               for p, cls in neuron_cls.items()}
    projs = {p: cls(ctx, p, sanitize(p), graph[p], graph.meta(p)["constraints"], sparse=export.sparse)
             for p, cls in proj_cls.items()}
    records = _parse_record(graph, export.record)

    # Interface names first, so they stay clean; constants and intermediates take what is left.
    names = ctx.names
    in_names = {i: names.fresh(sanitize(i)) for i in graph.inputs}
    out_names = {o: names.fresh(sanitize(o)) for o in graph.outputs}
    rec_names = {key: names.fresh(f"{sanitize(pop)}.{var}") for key, pop, var in records}
    states: list[_State] = []
    for pop in graph.populations:
        low = neurons[pop]
        init = low.initial_state()
        for var in low.state_vars:
            base = f"state.{sanitize(pop)}.{var}"
            states.append(_State(names.fresh(base), names.fresh(base + ".next"), "neuron", pop, var, low.size,
                                 initial=np.broadcast_to(np.asarray(init[var], dtype=np.float64), (low.size,))))
    for src in plan.delayed:
        base = f"delay.{sanitize(src)}"
        var = "input" if isinstance(graph[src], Input) else graph[src].model.output_var
        states.append(_State(names.fresh(base), names.fresh(base + ".next"), "delay", src, var, graph.node_size(src),
                             length=plan.history_len[src]))
    for low in (*neurons.values(), *projs.values()):
        low.setup()

    build = _build_step_model if export.mode == "step" else _build_sequence_model
    main = build(ctx, graph, plan, neurons, projs, records, in_names, out_names, rec_names, states, export)
    _prune(main)
    interface = _interface(graph, export, in_names, out_names, rec_names, records, states)
    model = helper.make_model(main, opset_imports=[helper.make_opsetid("", export.opset)],
                              producer_name="ntgraph", producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    model.doc_string = (
        f"ntgraph network '{graph.name}' in {export.mode} mode (dt={options.dt!r} s, "
        f"discretization={options.discretization}, timing={options.timing}, {export.dtype}). "
        f"The metadata entry '{INTERFACE_KEY}' lists inputs, outputs and state; see docs/onnx.md."
    )
    helper.set_model_props(model, {
        "dt": repr(float(options.dt)),
        "discretization": options.discretization,
        "timing": options.timing,
        "mode": export.mode,
        "dtype": export.dtype,
        "ntgraph_version": __version__,
        "graph_name": graph.name,
        INTERFACE_KEY: json.dumps(interface, separators=(",", ":")),
    })
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def _prune(g: onnx.GraphProto) -> set[str]:
    """Remove nodes and initializers that no graph output depends on (dead code, e.g. a population
    that feeds no Output, record or state).  Returns the names ``g`` reads from an enclosing scope."""
    needed = {o.name for o in g.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(g.node):
        if not any(out in needed for out in node.output):
            continue
        keep.append(node)
        needed.update(i for i in node.input if i)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                needed |= _prune(attr.g)
    del g.node[:]
    g.node.extend(reversed(keep))
    used = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(used)
    local = {i.name for i in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    return needed - local


def _interface(graph: Graph, export: ExportOptions, in_names: dict, out_names: dict, rec_names: dict,
               records: list, states: list[_State]) -> dict:
    seq = export.mode == "sequence"
    lead = ["time", "batch"] if seq else ["batch"]
    state_io = export.mode == "step" or export.state_io
    outputs = []
    for o in graph.outputs:
        src = graph.source(o)
        var = "input" if isinstance(graph[src], Input) else graph[src].model.output_var
        outputs.append({"id": o, "name": out_names[o], "source": src, "var": var, "shape": [*lead, graph.node_size(o)]})
    return {
        "version": INTERFACE_VERSION,
        "mode": export.mode,
        "dtype": export.dtype,
        "state_io": state_io,
        "inputs": [{"id": i, "name": in_names[i], "shape": [*lead, graph[i].size]} for i in graph.inputs],
        "outputs": outputs,
        "records": [{"key": key, "name": rec_names[key], "population": pop, "var": var,
                     "shape": [*lead, graph[pop].size]} for key, pop, var in records],
        "state": [s.to_json() for s in states] if state_io else [],
    }


class _Batch:
    """The batch size ``[1]`` (int64) of one graph, read from an input's shape when first needed."""

    def __init__(self, b: GraphBuilder, source: str, axis: int) -> None:
        self.b, self.source, self.axis = b, source, axis
        self._name: Optional[str] = None

    def __call__(self) -> str:
        if self._name is None:
            self._name = self.b.dim(self.source, self.axis, "batch")
        return self._name


def _zero_currents(b: GraphBuilder, graph: Graph, plan: _Plan, batch: _Batch) -> dict[str, str]:
    """``[batch, n]`` zeros for populations that receive no projection (the torch backend's zero current)."""
    return {pop: b.zeros([batch(), b.ctx.ints(f"i{graph[pop].size}", [graph[pop].size])], f"{sanitize(pop)}.no_input")
            for pop in plan.order if not plan.has_current(pop)}


def _build_step_model(ctx: ModelContext, graph: Graph, plan: _Plan, neurons: dict, projs: dict, records: list,
                      in_names: dict, out_names: dict, rec_names: dict, states: list[_State],
                      export: ExportOptions) -> onnx.GraphProto:
    b = GraphBuilder(ctx, sanitize(graph.name) + "_step")
    for i in graph.inputs:
        b.add_input(in_names[i], ["batch", graph[i].size], f"Input '{i}' at step t, [batch, {graph[i].size}]")
    for s in states:
        b.add_input(s.name, s.shape, s.describe() + " (at step t)")
    batch = _Batch(b, in_names[graph.inputs[0]], 0)
    state_in = {}
    for s in states:
        if s.kind == "neuron":
            state_in.setdefault(s.node, {})[s.var] = s.name
    step = _emit_step(b, plan, neurons, projs, x=dict(in_names), drive=None, state=state_in,
                      delay={s.node: s.name for s in states if s.kind == "delay"},
                      zeros=_zero_currents(b, graph, plan, batch))
    # Expose the state first so renames give the neuron variables their state names; then outputs and records.
    for s in states:
        value = step.next_delay[s.node] if s.kind == "delay" else step.next_state[s.node][s.var]
        b.expose(value, s.next, s.shape, s.describe() + " (at step t+1)")
    for o in graph.outputs:
        src = graph.source(o)
        value = in_names[src] if isinstance(graph[src], Input) else step.now[src]
        b.expose(value, out_names[o], ["batch", graph.node_size(o)], f"Output '{o}' ({src}) at step t")
    for key, pop, var in records:
        b.expose(step.values[pop][var], rec_names[key], ["batch", graph[pop].size], f"record {key} at step t")
    rank = {name: k for k, name in enumerate([*out_names.values(), *rec_names.values(), *(s.next for s in states)])}
    b.outputs.sort(key=lambda v: rank[v.name])
    doc = (f"One time step of ntgraph network '{graph.name}': (inputs_t, state_t) -> (outputs_t, records_t, state_t+1). "
           f"Feed each '.next' output back as the state input of the next step.")
    return b.graph(doc, ctx.initializers)


def _build_sequence_model(ctx: ModelContext, graph: Graph, plan: _Plan, neurons: dict, projs: dict, records: list,
                          in_names: dict, out_names: dict, rec_names: dict, states: list[_State],
                          export: ExportOptions) -> onnx.GraphProto:
    m = GraphBuilder(ctx, sanitize(graph.name))
    for i in graph.inputs:
        m.add_input(in_names[i], ["time", "batch", graph[i].size], f"Input '{i}', [time, batch, {graph[i].size}]")
    if export.state_io:
        for s in states:
            m.add_input(s.name, s.shape, s.describe() + " (before the first step)")
    x0 = in_names[graph.inputs[0]]
    batch = _Batch(m, x0, 1)

    # Initial state: graph inputs (state_io) or the models' initial values broadcast over the batch.
    initial: dict[str, str] = {}
    for s in states:
        if export.state_io:
            initial[s.name] = s.name
            continue
        size = ctx.ints(f"i{s.size}", [s.size])
        ss = sanitize(s.node)
        if s.kind == "neuron":
            shape = m.concat([batch(), size], 0, f"{ss}.{s.var}.initial_shape")
            value = ctx.const(f"{ss}.{s.var}.initial", s.initial, f"Population '{s.node}': {s.var} at t=0")
            initial[s.name] = m.op("Expand", [value, shape], f"{ss}.{s.var}.initial_state")
        else:
            initial[s.name] = m.zeros([ctx.ints(f"i{s.length}", [s.length]), batch(), size], f"delay.{ss}.initial")

    # Input projections for all steps at once: [time, batch, n_post] per population.
    by_node = {s.node: s for s in states if s.kind == "delay"}
    extended: dict[str, str] = {}
    for i in graph.inputs:
        if i in by_node:
            extended[i] = m.concat([initial[by_node[i].name], in_names[i]], 0, f"{sanitize(i)}.extended")
    drive: dict[str, str] = {}
    for pop in plan.order:
        for proj, src, d in plan.input_projs[pop]:
            frames = in_names[src]
            if d > 0:
                length = plan.history_len[src]
                frames = m.slice(extended[src], length - d, -d, 0, f"{sanitize(proj)}.frames")
            c = projs[proj].apply(m, frames)
            drive[pop] = c if pop not in drive else m.add(drive[pop], c, f"{sanitize(pop)}.drive")
    zeros = _zero_currents(m, graph, plan, batch)

    # The Scan body: one step of the populations.
    body = GraphBuilder(ctx, sanitize(graph.name) + "_step")
    carried = [s for s in states if s.kind == "neuron" or not isinstance(graph[s.node], Input)]
    step_in = {s.name: ctx.names.fresh(f"step.{s.name}") for s in carried}
    for s in carried:
        body.add_input(step_in[s.name], s.shape, s.describe())
    scan_inputs: list[tuple[str, str]] = []  # (outer sequence, body element)
    drive_t: dict[str, str] = {}
    for pop, seq in drive.items():
        drive_t[pop] = body.add_input(ctx.names.fresh(f"step.{sanitize(pop)}.drive"), ["batch", graph[pop].size],
                                      f"summed Input current of '{pop}' at step t")
        scan_inputs.append((seq, drive_t[pop]))
    if not scan_inputs:  # Scan needs one scanned tensor: the first Input gives the number of steps
        scan_inputs.append((x0, body.add_input(ctx.names.fresh(f"step.{x0}"), ["batch", graph[graph.inputs[0]].size])))
    state_in: dict[str, dict[str, str]] = {}
    for s in carried:
        if s.kind == "neuron":
            state_in.setdefault(s.node, {})[s.var] = step_in[s.name]
    step = _emit_step(body, plan, neurons, projs, x=None, drive=drive_t, state=state_in,
                      delay={s.node: step_in[s.name] for s in carried if s.kind == "delay"}, zeros=zeros)
    for s in carried:
        value = step.next_delay[s.node] if s.kind == "delay" else step.next_state[s.node][s.var]
        body.expose(value, ctx.names.fresh(f"step.{s.next}"), s.shape)
    scan_outputs: list[tuple[str, str, int, str]] = []  # (outer name, body value, size, doc)
    for o in graph.outputs:
        src = graph.source(o)
        if isinstance(graph[src], Population):
            scan_outputs.append((out_names[o], step.now[src], graph.node_size(o), f"Output '{o}' ({src})"))
    for key, pop, var in records:
        scan_outputs.append((rec_names[key], step.values[pop][var], graph[pop].size, f"record {key}"))
    for outer, value, size, _ in scan_outputs:
        body.expose(value, ctx.names.fresh(f"step.{outer}"), ["batch", size])
    carried_names = {s.name for s in carried}
    final = {s.name: (s.next if export.state_io else ctx.names.fresh(f"{s.name}.final")) for s in carried}
    if carried or scan_outputs:  # (a graph whose Outputs all read Inputs has no time loop)
        m.node("Scan", [initial[s.name] for s in carried] + [seq for seq, _ in scan_inputs],
               [final[s.name] for s in carried] + [outer for outer, _, _, _ in scan_outputs], "time_loop",
               body=body.graph(f"One time step of '{graph.name}' (the Scan body)"), num_scan_inputs=len(scan_inputs))
    for outer, _, size, doc in scan_outputs:
        m.declare_output(outer, ["time", "batch", size], f"{doc}, [time, batch, {size}]")
    for o in graph.outputs:
        src = graph.source(o)
        if isinstance(graph[src], Input):
            m.expose(in_names[src], out_names[o], ["time", "batch", graph.node_size(o)], f"Output '{o}' (Input '{src}')")
    if export.state_io:
        for s in states:
            if s.name in carried_names:
                m.declare_output(s.next, s.shape, s.describe() + " (after the last step)")
            else:  # delay line of an Input: the last D frames of [previous line, x]
                value = m.slice(extended[s.node], -s.length, INT64_MAX, 0, f"delay.{sanitize(s.node)}.last")
                m.expose(value, s.next, s.shape, s.describe() + " (after the last step)")
    rank = {name: k for k, name in enumerate([*out_names.values(), *rec_names.values(), *(s.next for s in states)])}
    m.outputs.sort(key=lambda v: rank[v.name])
    doc = (f"ntgraph network '{graph.name}' over a whole sequence: inputs [time, batch, n] -> outputs [time, batch, n]; "
           f"the time loop is the Scan node 'time_loop/Scan'.")
    return m.graph(doc, ctx.initializers)
