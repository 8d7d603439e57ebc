"""The fast execution plan of :class:`SimulationModule`: one population group at a time, all ``T`` steps at once.

The step-by-step loop (``SimulationModule.forward`` with ``fast=False``, the
reference) advances every population by one step before the next step.  Under
the time-step semantics (``docs/semantics.md``) a population's output at step
``t`` depends only on its own past and on what its sources emit at steps
``<= t``, so the same values come out when the populations are taken group by
group: the strongly connected components of the population graph (projections
as edges), in topological order.  Each group then sees everything outside it
as a whole ``[T, batch, n]`` trajectory:

* the currents from Inputs and from populations of earlier groups are computed
  for all steps at once (one matmul over ``T*batch`` rows per projection,
  shifted by its delay using the history of the previous run);
* a group of one LIF population whose only self-projection (if any) is dense
  with a delay >= 1 runs as a single :class:`~backends.torchsim.scan.LIFScan`
  (the recurrent matmul inside the scan, a hand-written backward loop); an
  ALIF population without learnable parameters likewise as an
  :class:`~backends.torchsim.scan.ALIFScan`; an LI population or a CubaLIF
  population without a self-projection as linear scans (+ a LIF scan), and one
  without learnable parameters whose only self-projection is dense (delay >= 1)
  as a compiled :class:`~backends.torchsim.scan_cuba.CubaScan` where the
  compiled kernels apply (else its step loop); a
  Wilson-Cowan, rate-unit or IF population (learnable parameters included),
  alone or with a dense self-projection of delay >= 1, as a
  :class:`~backends.torchsim.scan_rate.RateScan` or
  :class:`~backends.torchsim.scan_rate.IFScan`;
* any other group (several populations in a cycle, other neuron models, sparse
  or one-to-one self-projections) runs its own step loop over ``T`` with the
  models' ``step`` functions, as the reference does, with the dense
  projections from inside the group fused into one matmul per target and step.

The reference path is still used when a per-step hook (``on_step``: e-prop,
the NaN guard) needs the outputs of all populations step by step, or when a
population has ``capture`` set.  Results agree with the reference: spikes
identical and gradients equal to rounding (the tests compare at float64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor

from .neurons import (ALIFDynamics, CubaLIFDynamics, IFDynamics, LIDynamics, LIFDynamics, RateDynamics,
                      WilsonCowanDynamics)
from .projections import DenseProjection
from .scan import alif_scan, lif_scan, linear_scan, step_threads
from .scan_cuba import cuba_scan
from .scan_rate import InstantRateCell, LeakyRateCell, RateCell, WilsonCowanCell, if_scan, rate_scan

if TYPE_CHECKING:  # pragma: no cover
    from .module import SimulationModule

__all__ = ["Group", "plan_groups", "run_layered"]


class Group:
    """Populations that run together, ``members`` in step order.

    ``kind``: ``"lif"`` (a :class:`LIFScan`, ``self_proj`` = its dense self-projection and delay, or None),
    ``"alif"`` (the same with :class:`ALIFScan`, for ALIF populations without learnable parameters),
    ``"li"`` (a leaky integrator as one :class:`LinearScan`), ``"cuba"`` (CubaLIF: the synaptic current as a
    :class:`LinearScan`, then a :class:`LIFScan`), ``"wc"`` / ``"rate"`` (a Wilson-Cowan / rate-unit population as
    one :class:`~.scan_rate.RateScan`, ``self_proj`` as for ``"lif"``), ``"if"`` (an IF population as one
    :class:`~.scan_rate.IFScan`, likewise) or ``"steps"`` (a step loop over the members).
    """

    def __init__(self, members: list[str], kind: str, self_proj: Optional[tuple[str, int]] = None) -> None:
        self.members = members
        self.kind = kind
        self.self_proj = self_proj

    @property
    def scan(self) -> bool:
        return self.kind != "steps"

    def __repr__(self) -> str:
        return f"Group({self.kind}: {', '.join(self.members)})"


#: Group kinds of the populations run by :mod:`~backends.torchsim.scan_rate` (alone or with a dense self-projection).
_RATE_AND_IF_KINDS = {WilsonCowanDynamics: "wc", RateDynamics: "rate", IFDynamics: "if"}


def plan_groups(module: "SimulationModule") -> list[Group]:
    """The strongly connected components of the population graph in topological (step) order."""
    rank = {p: k for k, p in enumerate(module.order)}
    deps = nx.DiGraph()
    deps.add_nodes_from(module.order)
    for pop in module.order:
        for _, src, _ in module._pop_projs[pop]:
            deps.add_edge(src, pop)
    cond = nx.condensation(deps)
    first = {c: min(rank[m] for m in cond.nodes[c]["members"]) for c in cond}
    groups = []
    for c in nx.lexicographical_topological_sort(cond, key=first.get):
        members = sorted(cond.nodes[c]["members"], key=rank.get)
        kind, self_proj = "steps", None
        if len(members) == 1:
            pop = members[0]
            dyn_type = type(module._dyn[pop])
            own = [(proj, delay) for proj, src, delay in module._pop_projs[pop] if src == pop]
            dense_self = len(own) == 1 and isinstance(module._proj[own[0][0]], DenseProjection) and own[0][1] >= 1
            if dyn_type is LIFDynamics or (dyn_type is ALIFDynamics and not module._dyn[pop].learnable):
                name = "lif" if dyn_type is LIFDynamics else "alif"
                if not own:
                    kind = name
                elif dense_self:
                    kind, self_proj = name, own[0]
            elif dyn_type in _RATE_AND_IF_KINDS:
                if not own:
                    kind = _RATE_AND_IF_KINDS[dyn_type]
                elif dense_self:
                    kind, self_proj = _RATE_AND_IF_KINDS[dyn_type], own[0]
            elif dyn_type is LIDynamics and not own:
                kind = "li"
            elif dyn_type is CubaLIFDynamics and not own:
                kind = "cuba"
            elif dyn_type is CubaLIFDynamics and dense_self and not module._dyn[pop].learnable:
                kind, self_proj = "cuba", own[0]  # the compiled CubaScan, or the step loop where it does not apply
        groups.append(Group(members, kind, self_proj))
    return groups


def delayed(trajectory: Tensor, past: list[Tensor], delay: int) -> Tensor:
    """Frames ``[T, B, n]`` of a source as seen through ``delay``: step ``t`` reads ``t - delay`` (``past`` before 0)."""
    if delay == 0:
        return trajectory
    steps = trajectory.shape[0]
    head = torch.stack(past[len(past) - delay:])
    return torch.cat([head, trajectory[:max(steps - delay, 0)]])[:steps]


def run_layered(module: "SimulationModule", xs: dict[str, Tensor], first: Tensor, steps: int, batch: int,
                probes: list[tuple[str, str, str]], neurons: dict[str, tuple[Tensor, ...]],
                history: dict[str, list[Tensor]]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run all groups; returns (trajectories by node, records by probe key) and updates ``neurons``/``history``."""
    weights = {p: m.effective_weight() for p, m in module._proj.items()}
    coeffs = {p: d.coefficients() for p, d in module._dyn.items()}
    past = {k: list(v) for k, v in history.items()}  # outputs before step 0, oldest first
    drive = module._input_drive(xs, history, weights)
    traj: dict[str, Tensor] = dict(xs)
    records: dict[str, Tensor] = {}
    for group in module._groups:
        ext: dict[str, Optional[Tensor]] = {}
        for pop in group.members:
            current = drive.get(pop)
            for proj, src, delay in module._pop_projs[pop]:
                if src in group.members:
                    continue
                c = module._proj[proj].apply(delayed(traj[src], past.get(src, []), delay), weights[proj])
                current = c if current is None else current + c
            ext[pop] = current
        if group.kind == "li":
            _run_li(module, group, ext, first, steps, batch, probes, neurons, coeffs, traj, records)
        elif group.kind == "cuba" and group.self_proj is None:
            _run_cuba(module, group, ext, first, steps, batch, probes, neurons, coeffs, traj, records)
        elif group.kind == "cuba":
            if not _run_cuba_recurrent(module, group, ext, first, steps, batch, probes, neurons, past, weights,
                                       coeffs, traj, records):
                _run_steps(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj,
                           records)
        elif group.kind in ("wc", "rate"):
            _run_rate(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj, records)
        elif group.kind == "if":
            _run_if(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj, records)
        elif group.kind == "alif":
            _run_alif(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj, records)
        elif group.scan:
            _run_scan(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj, records)
        else:
            _run_steps(module, group, ext, first, steps, batch, probes, neurons, past, weights, coeffs, traj, records)
    for src in history:
        if src in module._dyn:
            n = len(history[src])
            history[src] = (past[src] + list(traj[src].unbind(0)))[-n:] if n else []
    return traj, records


def _run_scan(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
              probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict, traj: dict,
              records: dict) -> None:
    pop = group.members[0]
    dyn: LIFDynamics = module._dyn[pop]  # type: ignore[assignment]
    c = coeffs[pop]
    drive = ext[pop]  # a temporary (a projection's output or a sum of them), never a stored trajectory
    if drive is None:
        drive = first.new_zeros(steps, batch, dyn.size)
    weight, bias, hist, delay, events = _self_projection(module, group, past, weights)
    (v0,) = neurons[pop]
    z_all, v_all = lif_scan(drive, v0, c.a, c.v_leak, c.r, c.v_th, c.v_reset, zero_reset=dyn.model.reset == "zero",
                            detach=dyn.detach_reset, surrogate=dyn.surrogate, hist=hist, weight=weight, bias=bias,
                            delay=delay, keep_v=any(p == pop and var != dyn.output_var for _, p, var in probes),
                            overwrite_drive=True, events=events)
    traj[pop] = z_all
    neurons[pop] = (v_all[-1],)
    for key, p, var in probes:
        if p == pop:
            records[key] = z_all if var == dyn.output_var else v_all


def _self_projection(module: "SimulationModule", group: Group, past: dict, weights: dict) -> tuple:
    """``(weight, bias, hist, delay, events)`` of the group's dense self-projection, or Nones (and delay 1).

    ``events``: the projection's ``(event_mode, event_threshold)`` for the scan's event-driven recurrence.
    """
    if group.self_proj is None:
        return None, None, None, 1, None
    pop = group.members[0]
    proj, delay = group.self_proj
    pm = module._proj[proj]
    bias = pm.bias if getattr(pm, "has_bias", False) else None
    return (weights[proj], bias, torch.stack(past[pop][len(past[pop]) - delay:]), delay,
            (pm.event_mode, pm.event_threshold))


def _run_alif(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
              probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict, traj: dict,
              records: dict) -> None:
    pop = group.members[0]
    dyn = module._dyn[pop]
    drive = _drive_or_zeros(ext, pop, first, steps, batch, dyn.size)
    weight, bias, hist, delay, events = _self_projection(module, group, past, weights)
    v0, adapt0 = neurons[pop]
    z_all, v_all, ad_all = alif_scan(drive, v0, adapt0, coeffs[pop], zero_reset=dyn.model.reset == "zero",
                                     detach=dyn.detach_reset, surrogate=dyn.surrogate, hist=hist, weight=weight,
                                     bias=bias, delay=delay, events=events)
    _publish(pop, {dyn.output_var: z_all, "v": v_all, "a": ad_all}, (v_all[-1], ad_all[-1]), probes, neurons, traj,
             records, dyn.output_var)


def _publish(pop: str, by_var: dict[str, Tensor], state: tuple[Tensor, ...], probes: list, neurons: dict,
             traj: dict, records: dict, output: str) -> None:
    """Store a scanned population's results: its trajectory (``by_var[output]``), its state after the last step
    and the probed variables (``by_var``: every recordable variable of the population by name)."""
    traj[pop] = by_var[output]
    neurons[pop] = state
    for key, p, var in probes:
        if p == pop:
            records[key] = by_var[var]


def _rate_cell(dyn: Any, c: Any) -> tuple[RateCell, tuple]:
    """The :class:`~.scan_rate.RateCell` of a Wilson-Cowan or rate-unit population and its parameter triple."""
    if isinstance(dyn, WilsonCowanDynamics):
        return WilsonCowanCell(dyn.dt, exact=dyn.discretization != "euler"), (c.tau, c.mu, c.r)
    tanh = dyn.model.activation == "tanh"
    if c.a is None:
        return InstantRateCell(tanh), (None, c.bias, None)
    return LeakyRateCell(tanh), (c.a, c.bias, None)


def _run_rate(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
              probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict, traj: dict,
              records: dict) -> None:
    """A Wilson-Cowan or rate-unit population (with its dense self-projection, if any) as one ``RateScan``."""
    pop = group.members[0]
    dyn = module._dyn[pop]
    drive = _drive_or_zeros(ext, pop, first, steps, batch, dyn.size)
    weight, bias, hist, delay, _ = _self_projection(module, group, past, weights)
    cell, params = _rate_cell(dyn, coeffs[pop])
    (x0,) = neurons[pop]
    x_all = rate_scan(drive, x0, params, cell, hist=hist, weight=weight, bias=bias, delay=delay,
                      overwrite_drive=ext[pop] is not None)
    traj[pop] = x_all
    neurons[pop] = (x_all[-1],)
    for key, p, _ in probes:
        if p == pop:
            records[key] = x_all  # output and state are both the rate


def _run_if(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
            probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict, traj: dict,
            records: dict) -> None:
    """An IF population (with its dense self-projection, if any) as one ``IFScan`` (dense recurrence)."""
    pop = group.members[0]
    dyn = module._dyn[pop]
    c = coeffs[pop]
    drive = _drive_or_zeros(ext, pop, first, steps, batch, dyn.size)
    weight, bias, hist, delay, _ = _self_projection(module, group, past, weights)
    (v0,) = neurons[pop]
    z_all, v_all = if_scan(drive, v0, c.gain, c.v_th, c.v_reset, zero_reset=dyn.model.reset == "zero",
                           detach=dyn.detach_reset, surrogate=dyn.surrogate, hist=hist, weight=weight, bias=bias,
                           delay=delay, keep_v=any(p == pop and var != dyn.output_var for _, p, var in probes))
    traj[pop] = z_all
    neurons[pop] = (v_all[-1],)
    for key, p, var in probes:
        if p == pop:
            records[key] = z_all if var == dyn.output_var else v_all


def _drive_or_zeros(ext: dict, pop: str, first: Tensor, steps: int, batch: int, size: int) -> Tensor:
    drive = ext[pop]
    return first.new_zeros(steps, batch, size) if drive is None else drive


def _run_li(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
            probes: list, neurons: dict, coeffs: dict, traj: dict, records: dict) -> None:
    """LI: ``v_t = a*v_{t-1} + (1-a)*(v_leak + r*I_t)``, the input term for all steps at once."""
    pop = group.members[0]
    dyn = module._dyn[pop]
    c = coeffs[pop]
    drive = _drive_or_zeros(ext, pop, first, steps, batch, dyn.size)
    (v0,) = neurons[pop]
    v_all = linear_scan((1.0 - c.a) * (c.v_leak + c.r * drive), v0, c.a)
    traj[pop] = v_all
    neurons[pop] = (v_all[-1],)
    for key, p, _ in probes:
        if p == pop:
            records[key] = v_all  # output and state are both v


def _run_cuba(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
              probes: list, neurons: dict, coeffs: dict, traj: dict, records: dict) -> None:
    """CubaLIF without a self-projection: ``i_t = b*i_{t-1} + (1-b)*w_in*I_t`` (linear), then the LIF scan on ``i``."""
    pop = group.members[0]
    dyn = module._dyn[pop]
    c = coeffs[pop]
    drive = _drive_or_zeros(ext, pop, first, steps, batch, dyn.size)
    i0, v0 = neurons[pop]
    i_all = linear_scan((1.0 - c.b) * c.w_in * drive, i0, c.b)
    z_all, v_all = lif_scan(i_all, v0, c.a, c.v_leak, c.r, c.v_th, c.v_reset, zero_reset=dyn.model.reset == "zero",
                            detach=dyn.detach_reset, surrogate=dyn.surrogate,
                            keep_v=any(p == pop and var == "v" for _, p, var in probes))
    _publish(pop, {dyn.output_var: z_all, "i": i_all, "v": v_all}, (i_all[-1], v_all[-1]), probes, neurons, traj,
             records, dyn.output_var)


def _run_cuba_recurrent(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int,
                        batch: int, probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict,
                        traj: dict, records: dict) -> bool:
    """CubaLIF with its dense self-projection as one compiled :class:`~.scan_cuba.CubaScan`; False (nothing
    run) where that scan does not apply, and the caller runs the step loop."""
    pop = group.members[0]
    dyn = module._dyn[pop]
    weight, bias, hist, delay, _ = _self_projection(module, group, past, weights)
    i0, v0 = neurons[pop]
    out = cuba_scan(_drive_or_zeros(ext, pop, first, steps, batch, dyn.size), i0, v0, coeffs[pop],
                    zero_reset=dyn.model.reset == "zero", detach=dyn.detach_reset, surrogate=dyn.surrogate,
                    hist=hist, weight=weight, bias=bias, delay=delay,
                    keep_v=any(p == pop and var == "v" for _, p, var in probes))
    if out is None:
        return False
    z_all, i_all, v_all = out
    _publish(pop, {dyn.output_var: z_all, "i": i_all, "v": v_all}, (i_all[-1], v_all[-1]), probes, neurons, traj,
             records, dyn.output_var)
    return True


def _run_steps(module: "SimulationModule", group: Group, ext: dict, first: Tensor, steps: int, batch: int,
               probes: list, neurons: dict, past: dict, weights: dict, coeffs: dict, traj: dict,
               records: dict) -> None:
    members = group.members
    frames = {p: ext[p].unbind(0) for p in members if ext[p] is not None}
    outs: dict[str, list[Tensor]] = {p: [] for p in members}
    mine = [(key, p, var) for key, p, var in probes if p in outs]
    rec: dict[str, list[Tensor]] = {key: [] for key, _, _ in mine}
    plan = {pop: _fuse(module, [e for e in module._pop_projs[pop] if e[1] in outs], weights) for pop in members}
    macs = max([batch * sum(weights[proj].numel() for proj, src, _ in module._pop_projs[pop]
                            if src in outs and isinstance(module._proj[proj], DenseProjection)) for pop in members])

    def pre_of(src: str, delay: int, t: int, now: dict) -> Tensor:
        if delay == 0:
            return now[src]
        return outs[src][t - delay] if t >= delay else past[src][t - delay]

    with step_threads(macs):
        for t in range(steps):
            now: dict[str, Tensor] = {}
            for pop in members:
                dyn = module._dyn[pop]
                current = frames[pop][t] if pop in frames else None
                fused, single = plan[pop]
                if fused is not None:
                    entries, w_cat, b_sum = fused
                    pre = torch.cat([pre_of(src, delay, t, now) for _, src, delay in entries], -1)
                    cur = F.linear(pre, w_cat, b_sum)
                    current = cur if current is None else current + cur
                for proj, src, delay in single:
                    cur = module._proj[proj].apply(pre_of(src, delay, t, now), weights[proj])
                    current = cur if current is None else current + cur
                if current is None:
                    current = first.new_zeros(batch, dyn.size)
                out, neurons[pop] = dyn.step(current, neurons[pop], coeffs[pop])
                now[pop] = out
                outs[pop].append(out)
            for key, p, var in mine:
                rec[key].append(module._dyn[p].output_of(now[p], neurons[p], var))
    for p in members:
        traj[p] = torch.stack(outs[p])
    for key, v in rec.items():
        records[key] = torch.stack(v)


def _fuse(module: "SimulationModule", entries: list[tuple[str, str, int]], weights: dict) -> tuple:
    """Split a population's in-group projections into one fused dense matmul and the rest.

    Two or more dense projections become one matmul per step: their presynaptic
    outputs concatenated, ``[B, sum n_pre]``, times their effective weights
    concatenated along the input axis (built once per forward, so autograd
    reaches every weight), plus the sum of their biases.  Returns
    ``((entries, W_cat, b_sum) or None, other entries)``.
    """
    dense = [e for e in entries if isinstance(module._proj[e[0]], DenseProjection)]
    if len(dense) < 2:
        return None, entries
    w_cat = torch.cat([weights[proj] for proj, _, _ in dense], 1)
    biases = [module._proj[proj].bias for proj, _, _ in dense if module._proj[proj].has_bias]
    b_sum = None
    for b in biases:
        b_sum = b if b_sum is None else b_sum + b
    return (dense, w_cat, b_sum), [e for e in entries if e not in dense]


def describe(groups: list[Any]) -> str:
    """One line per group, for debugging and the docs."""
    return "\n".join(repr(g) for g in groups)
