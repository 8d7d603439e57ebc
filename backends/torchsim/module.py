"""The simulation module: runs a compiled graph over time, step by step.

Time-step semantics (``docs/semantics.md``): at step ``t`` every population, in
the scheduled order, sums the currents of its incoming projections, each
reading its source's output of step ``t - delay`` (delay 0: the output of this
very step, already computed because sources come first), then takes one step
of its neuron model.  Projections from Inputs are evaluated for all steps at
once before the loop (one matmul per projection instead of ``T``).

That step-by-step loop is the reference.  By default ``forward`` runs the same
semantics group by group (``backends/torchsim/layered.py``): each strongly
connected group of populations runs all ``T`` steps at once, LIF, ALIF, CubaLIF and
LI populations as single custom-autograd scans (``backends/torchsim/scan.py``), and
Wilson-Cowan, rate-unit and IF populations likewise (``backends/torchsim/scan_rate.py``).
``model.fast = False`` forces the reference loop; per-step hooks (``on_step``)
and populations with ``capture`` set use it automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ntgraph.errors import ShapeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Population

from .layered import plan_groups, run_layered
from .neurons import NeuronDynamics
from .projections import ProjectionModule

__all__ = ["SimulationModule", "SimulationResult", "SimState"]

InputsLike = Union[Tensor, np.ndarray, Sequence[Any], Mapping[str, Any]]
StepHook = Callable[[int, dict, dict, dict], None]


@dataclass
class SimState:
    """Everything needed to continue a run: neuron states and recent outputs.

    ``neurons[pop]`` is the tuple of state tensors ``[batch, n]`` (order of the
    model's ``state_vars``); ``history[node]`` holds the node's outputs of the
    last ``D`` steps, oldest first, where ``D`` is the longest delay of the
    projections that leave it.  Passing the final state of one run as the
    ``state`` of the next gives the same result as one long run.
    """

    neurons: dict[str, tuple[Tensor, ...]] = field(default_factory=dict)
    history: dict[str, list[Tensor]] = field(default_factory=dict)

    def detach(self) -> "SimState":
        """A copy cut from the autograd graph (truncated BPTT)."""
        return SimState(
            {k: tuple(s.detach() for s in v) for k, v in self.neurons.items()},
            {k: [h.detach() for h in v] for k, v in self.history.items()},
        )


@dataclass
class SimulationResult:
    """Outputs ``[T, batch, n]`` by Output name, probes by ``"population.variable"``, and the final state.

    ``result[name]`` looks up an output first, then a probe.
    """

    outputs: dict[str, Tensor]
    records: dict[str, Tensor]
    state: SimState

    def __getitem__(self, name: str) -> Tensor:
        if name in self.outputs:
            return self.outputs[name]
        if name in self.records:
            return self.records[name]
        raise KeyError(f"no output or record named {name!r}; outputs: {list(self.outputs)}, records: {list(self.records)}")


def _module_key(node_id: str) -> str:
    """torch forbids '.' in submodule names; node ids may contain it."""
    return node_id.replace(".", "\u00b7")


class SimulationModule(nn.Module):
    """A compiled ntgraph network as a ``torch.nn.Module``.

    Call it with one tensor ``[T, batch, size]`` per Input (positional in the
    graph's input order, or a dict by name; ``[batch, T, size]`` when compiled
    with ``batch_first=True``).  It returns a :class:`SimulationResult`.
    ``record`` (at compile time or per call) lists probes: a population id for
    its output variable, or ``"population.variable"`` (``v``, ``i``, ``a``, ...).
    """

    def __init__(self, graph: Graph, options: Any, dynamics: dict[str, NeuronDynamics],
                 projections: dict[str, ProjectionModule], *, batch_first: bool, record: Sequence[str]) -> None:
        super().__init__()
        self.graph = graph
        self.options = options
        self.batch_first = bool(batch_first)
        self.populations = nn.ModuleDict({_module_key(k): v for k, v in dynamics.items()})
        self.projections = nn.ModuleDict({_module_key(k): v for k, v in projections.items()})
        self._dyn = dynamics
        self._proj = projections
        self.input_ids = graph.inputs
        self.input_sizes = {i: graph[i].size for i in self.input_ids}
        self.output_sources = {o: graph.source(o) for o in graph.outputs}
        self.order = list(graph.attrs["order"])
        # Plan of the step loop (from the schedule pass): input-driven projections run for all steps at once.
        self._input_projs = {p: [e for e in graph.meta(p)["incoming"] if e[1] in self.input_sizes] for p in self.order}
        self._pop_projs = {p: [e for e in graph.meta(p)["incoming"] if e[1] not in self.input_sizes] for p in self.order}
        self._history_len: dict[str, int] = dict(graph.attrs["history"])
        self.default_record = self._parse_record(record)
        #: Run group by group with the LIF scan (backends/torchsim/layered.py); False forces the step-by-step
        #: reference loop.  A per-step hook (``on_step``) or a population with ``capture`` set uses the reference.
        self.fast = True
        self._groups = plan_groups(self)

    # ------------------------------------------------------------------ helpers
    def _parse_record(self, record: Optional[Sequence[str]]) -> list[tuple[str, str, str]]:
        if record is None:
            return []
        if isinstance(record, str):
            record = [record]
        probes = []
        for spec in record:
            if spec in self._dyn:
                pop, var = spec, self._dyn[spec].output_var
            elif "." in spec and spec.rsplit(".", 1)[0] in self._dyn:
                pop, var = spec.rsplit(".", 1)
            else:
                raise ValidationError(
                    f"record {spec!r}: expected a population id or 'population.variable'; populations: {', '.join(self._dyn)}"
                )
            allowed = self._dyn[pop].model.recordable
            if var not in allowed:
                raise ValidationError(
                    f"record {spec!r}: Population '{pop}' ({type(self._dyn[pop].model).__name__}) has no variable {var!r}; "
                    f"expected one of {', '.join(allowed)}"
                )
            if (f"{pop}.{var}", pop, var) not in probes:  # "a" and "a.spikes" name the same probe
                probes.append((f"{pop}.{var}", pop, var))
        return probes

    def set_record(self, record: Optional[Sequence[str]]) -> None:
        """Replace the default probes (those of ``record=`` at compile time) used when a call gives none.

        Trainers use it so that regularisers reading recorded variables get them from a plain ``model(x)``.
        """
        self.default_record = self._parse_record(record)

    @property
    def recording(self) -> list[str]:
        """The default probes, as ``"population.variable"`` keys."""
        return [key for key, _, _ in self.default_record]

    def _reference_tensor(self) -> Tensor:
        for t in self.parameters():
            return t
        for t in self.buffers():
            return t
        return torch.zeros(())

    def _check_inputs(self, inputs: tuple) -> dict[str, Tensor]:
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            given = dict(inputs[0])
            unknown = set(given) - set(self.input_ids)
            missing = [i for i in self.input_ids if i not in given]
            if unknown or missing:
                raise ValidationError(
                    f"inputs: expected tensors for {self.input_ids}, got names {sorted(given)}"
                    + (f" (unknown: {sorted(unknown)})" if unknown else "")
                    + (f" (missing: {missing})" if missing else "")
                )
        else:
            if len(inputs) != len(self.input_ids):
                raise ValidationError(
                    f"inputs: expected {len(self.input_ids)} tensor(s), one per Input {self.input_ids}, got {len(inputs)}"
                )
            given = dict(zip(self.input_ids, inputs))
        ref = self._reference_tensor()
        layout = "[batch, T, size]" if self.batch_first else "[T, batch, size]"
        out: dict[str, Tensor] = {}
        tb = None
        for name in self.input_ids:
            x = given[name]
            try:
                x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
            except (TypeError, ValueError, RuntimeError) as exc:  # strings, objects, ragged lists
                raise ValidationError(f"Input '{name}': expected an array of real numbers, got {type(x).__name__} ({exc})") from None
            size = self.input_sizes[name]
            if x.ndim != 3 or x.shape[-1] != size or 0 in x.shape:
                raise ShapeError(
                    f"Input '{name}': expected a tensor of shape {layout.replace('size', str(size))}, got shape {tuple(x.shape)}"
                )
            if not (x.dtype.is_floating_point or x.dtype == torch.bool or not x.dtype.is_complex):
                raise ValidationError(f"Input '{name}': expected a real-valued tensor, got dtype {x.dtype}")
            if self.batch_first:
                x = x.transpose(0, 1)
            x = x.to(device=ref.device, dtype=ref.dtype if ref.dtype.is_floating_point else torch.get_default_dtype())
            if tb is None:
                tb = tuple(x.shape[:2])
            elif tuple(x.shape[:2]) != tb:
                raise ShapeError(f"Input '{name}': has (T, batch) = {tuple(x.shape[:2])}, expected {tb} like the other inputs")
            out[name] = x
        if not out:
            raise ValidationError("inputs: the graph has no Input; nothing to simulate")
        return out

    def initial_state(self, batch: int, like: Optional[Tensor] = None) -> SimState:
        """The state at t=0: each model's initial values and zero history."""
        like = self._reference_tensor() if like is None else like
        neurons = {p: d.initial_state(batch, like) for p, d in self._dyn.items()}
        history = {
            src: [torch.zeros(batch, self.graph.node_size(src), dtype=like.dtype, device=like.device) for _ in range(n)]
            for src, n in self._history_len.items()
        }
        return SimState(neurons, history)

    # ------------------------------------------------------------------ forward
    def forward(self, *inputs: InputsLike, record: Optional[Sequence[str]] = None,
                state: Optional[SimState] = None, on_step: Optional[StepHook] = None) -> SimulationResult:
        """Simulate ``T`` steps.  ``state`` continues from a previous run's ``result.state``.

        ``on_step(t, outputs, neuron_states, history)`` (optional) is called after
        every step, before the delay history moves on: ``outputs[pop]`` is the
        step's output, ``history[node][-d]`` the output of step ``t - d``.
        Online learning rules (e-prop) use it to update their traces.
        """
        xs = self._check_inputs(inputs)
        first = next(iter(xs.values()))
        steps, batch = first.shape[0], first.shape[1]
        probes = self.default_record if record is None else self._parse_record(record)
        state = self.initial_state(batch, first) if state is None else state
        neurons = dict(state.neurons)
        history = {k: list(v) for k, v in state.history.items()}

        if self.fast and on_step is None and not any(d.capture for d in self._dyn.values()):
            traj, records = run_layered(self, xs, first, steps, batch, probes, neurons, history)
            outputs = {out_id: traj[src] for out_id, src in self.output_sources.items()}
            records = {k: records[k] for k, _, _ in probes}
            if self.batch_first:
                outputs = {k: v.transpose(0, 1) for k, v in outputs.items()}
                records = {k: v.transpose(0, 1) for k, v in records.items()}
            return SimulationResult(outputs, records, SimState(neurons, history))

        weights = {p: m.effective_weight() for p, m in self._proj.items()}
        coeffs = {p: d.coefficients() for p, d in self._dyn.items()}
        # One unbind instead of T indexing ops: the backward of drive[t] would allocate and zero-fill a
        # full [T, batch, n] gradient at every step (quadratic in T); unbind's backward is one stack.
        drive = {pop: d.unbind(0) for pop, d in self._input_drive(xs, history, weights).items()}

        keep = {src for src in self.output_sources.values() if src in self._dyn}
        traces: dict[str, list[Tensor]] = {p: [] for p in keep}
        probe_traces: dict[str, list[Tensor]] = {key: [] for key, _, _ in probes}
        pop_history = [p for p in history if p in self._dyn]

        for t in range(steps):
            now: dict[str, Tensor] = {}
            for pop in self.order:
                dyn = self._dyn[pop]
                current = drive[pop][t] if pop in drive else None
                for proj, src, delay in self._pop_projs[pop]:
                    pre = now[src] if delay == 0 else history[src][-delay]
                    c = self._proj[proj].apply(pre, weights[proj])
                    current = c if current is None else current + c
                if current is None:
                    current = first.new_zeros(batch, dyn.size)
                out, neurons[pop] = dyn.step(current, neurons[pop], coeffs[pop])
                now[pop] = out
            if on_step is not None:
                on_step(t, now, neurons, history)
            for pop in pop_history:
                history[pop] = history[pop][1:] + [now[pop]]
            for pop in keep:
                traces[pop].append(now[pop])
            for key, pop, var in probes:
                probe_traces[key].append(self._dyn[pop].output_of(now[pop], neurons[pop], var))

        outputs = {}
        for out_id, src in self.output_sources.items():
            outputs[out_id] = xs[src] if src in xs else torch.stack(traces[src])
        records = {k: torch.stack(v) if v else first.new_zeros(0, batch, 0) for k, v in probe_traces.items()}
        if self.batch_first:
            outputs = {k: v.transpose(0, 1) for k, v in outputs.items()}
            records = {k: v.transpose(0, 1) for k, v in records.items()}
        return SimulationResult(outputs, records, SimState(neurons, history))

    def _input_drive(self, xs: dict[str, Tensor], history: dict[str, list[Tensor]],
                     weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Currents from Inputs for all steps at once, ``[T, batch, n]`` per target population.

        Updates ``history`` of delayed inputs in place with the last input frames.
        """
        drive: dict[str, Tensor] = {}
        extended: dict[str, Tensor] = {}
        for name, x in xs.items():
            past = history.get(name, [])
            extended[name] = torch.cat([torch.stack(past), x]) if past else x
        for pop, entries in self._input_projs.items():
            for proj, src, delay in entries:
                ext = extended[src]
                start = len(history.get(src, [])) - delay
                frames = ext[start:start + xs[src].shape[0]]
                c = self._proj[proj].apply(frames, weights[proj])
                drive[pop] = c if pop not in drive else drive[pop] + c
        for name in xs:
            if name in history:
                n = len(history[name])
                history[name] = list(extended[name][-n:].unbind(0))
        return drive

    # ------------------------------------------------------------------ write-back
    def to_graph(self) -> Graph:
        """A new IR graph holding the module's current (trained) weights and parameters."""
        graph = self.graph.copy()
        graph.attrs = {}
        for node_id in list(graph):
            graph.meta(node_id).clear()
        for proj, module in self._proj.items():
            graph = graph.with_payload(proj, module.to_payload())
        for pop, dyn in self._dyn.items():
            payload: Population = graph[pop]
            graph = graph.with_payload(pop, payload.replace(model=dyn.to_model()))
        return graph
