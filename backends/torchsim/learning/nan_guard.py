"""NaN guard: name the population or projection where a non-finite value first appeared.

When a training loss turns NaN or infinite, :func:`find_nonfinite` looks for the
origin, in this order (an earlier source explains the later ones):

1. the batch's inputs (an Input node id);
2. parameters and buffers: projection weights and biases (``model.projections``)
   and population parameters (``model.populations``), in the graph's step
   order (a projection before the population it drives); learnable ones must
   be finite, fixed ones must not be NaN (constraint buffers are skipped);
3. their gradients (left by the last ``backward``, if any);
4. when ``inputs`` are given and everything above is finite: a forward pass
   (no gradient) checking every population's output and state variables after
   each step, which finds the first step ``t`` and, within it, the first
   population in step order whose values are not finite (e.g. a membrane
   potential that grew past the float range).

The result is a :class:`NonFiniteSite` whose :meth:`~NonFiniteSite.describe`
is the message the trainer's :class:`~backends.torchsim.learning.StopOnNonFinite`
appends to its stop reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import Tensor

__all__ = ["NonFiniteSite", "find_nonfinite"]


@dataclass(frozen=True)
class NonFiniteSite:
    """Where a non-finite value was found.

    ``kind``: ``"input"``, ``"projection"`` or ``"population"``; ``node_id``: the
    IR node id; ``name``: the parameter, buffer or state variable; ``what``:
    ``"value"``, ``"gradient"`` or ``"state"``; ``step``: the time step (state
    only); ``count``/``total``: non-finite entries out of all; ``sample``: one
    of the non-finite values (nan, inf or -inf).
    """

    kind: str
    node_id: str
    name: str
    what: str
    count: int
    total: int
    sample: float
    step: Optional[int] = None

    def describe(self) -> str:
        """One sentence, e.g. ``projection 'h->o': gradient of 'weight' has 3 of 24 entries non-finite (nan)``."""
        subject = {"value": f"{self.name!r}", "gradient": f"gradient of {self.name!r}",
                   "state": f"state variable {self.name!r}"}[self.what]
        at = f" at time step {self.step}" if self.step is not None else ""
        return (f"{self.kind} {self.node_id!r}: {subject} has {self.count} of {self.total} entries "
                f"non-finite ({self.sample}){at}")


class _Found(Exception):
    """Stops the diagnostic forward pass at the first non-finite step."""

    def __init__(self, site: NonFiniteSite) -> None:
        super().__init__(site.describe())
        self.site = site


def _check(t: Optional[Tensor], kind: str, node_id: str, name: str, what: str,
           step: Optional[int] = None, nan_only: bool = False) -> Optional[NonFiniteSite]:
    if t is None or not torch.is_tensor(t) or not t.is_floating_point():
        return None
    bad = torch.isnan(t.detach()) if nan_only else ~torch.isfinite(t.detach())
    count = int(bad.sum())
    if count == 0:
        return None
    sample = float(t.detach()[bad].flatten()[0])
    return NonFiniteSite(kind, node_id, name, what, count, t.numel(), sample, step)


def _modules(model: Any) -> Iterator[tuple[str, str, torch.nn.Module]]:
    """(kind, node id, module) for every projection and population, in the graph's order.

    A projection comes right before the population it drives, so a NaN weight is
    reported before the NaN activity it causes.
    """
    projections = {m.node_id: m for m in model.projections.values()}
    populations = {m.node_id: m for m in model.populations.values()}
    order = list(getattr(model, "order", populations))
    graph = getattr(model, "graph", None)
    done: set[str] = set()
    for pop in order:
        incoming = graph.meta(pop).get("incoming", ()) if graph is not None else ()
        for entry in incoming:
            proj = entry[0]
            if proj in projections and proj not in done:
                done.add(proj)
                yield "projection", proj, projections[proj]
        if pop in populations:
            yield "population", pop, populations[pop]
    for proj, module in projections.items():
        if proj not in done:
            yield "projection", proj, module


#: Projection buffers that describe constraints, not values (bounds are +-inf where unbounded).
_CONSTRAINT_BUFFERS = frozenset({"sign", "mask", "low", "high"})


def _tensors(module: torch.nn.Module) -> Iterator[tuple[str, Tensor, bool]]:
    """(name, tensor, nan_only): learnable parameters must be finite; fixed buffers must not be NaN
    (a fixed parameter may be infinite on purpose, e.g. an unbounded limit)."""
    for name, p in module.named_parameters(recurse=False):
        yield name, p, False
    for name, b in module.named_buffers(recurse=False):
        if name not in _CONSTRAINT_BUFFERS:
            yield name, b, True


def _input_site(model: Any, inputs: Any) -> Optional[NonFiniteSite]:
    if isinstance(inputs, Mapping):
        named = list(inputs.items())
    else:
        seq = inputs if isinstance(inputs, (tuple, list)) else [inputs]
        named = list(zip(getattr(model, "input_ids", [f"input{k}" for k in range(len(seq))]), seq))
    for node_id, x in named:
        site = _check(x, "input", node_id, "data", "value")
        if site is not None:
            return site
    return None


def _state_tensors(dyn: Any, state: Any) -> Iterator[tuple[str, Tensor]]:
    if isinstance(state, Mapping):
        yield from state.items()
    elif isinstance(state, (tuple, list)):
        names = list(getattr(dyn, "state_vars", ()))
        for k, value in enumerate(state):
            yield (names[k] if k < len(names) else f"state{k}"), value
    elif torch.is_tensor(state):
        yield "state", state


def _forward_site(model: Any, inputs: Any) -> Optional[NonFiniteSite]:
    """Run the model once without gradients; the first (step, population) with a non-finite value."""
    dyn_by_id = {m.node_id: m for m in model.populations.values()}
    order = list(getattr(model, "order", dyn_by_id))

    def on_step(t: int, outputs: dict, neurons: dict, history: dict) -> None:
        for pop in order:
            if pop not in outputs:
                continue
            dyn = dyn_by_id.get(pop)
            site = _check(outputs[pop], "population", pop, getattr(dyn, "output_var", "output"), "state", t)
            for name, value in _state_tensors(dyn, neurons.get(pop)):
                site = site or _check(value, "population", pop, name, "state", t)
            if site is not None:
                raise _Found(site)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(inputs, Mapping):
                model(dict(inputs), record=(), on_step=on_step)
            elif isinstance(inputs, (tuple, list)):
                model(*inputs, record=(), on_step=on_step)
            else:
                model(inputs, record=(), on_step=on_step)
    except _Found as found:
        return found.site
    finally:
        model.train(was_training)
    return None


def find_nonfinite(model: Any, inputs: Any = None) -> Optional[NonFiniteSite]:
    """The first non-finite value in ``model`` (a torch ``SimulationModule``), or None.

    Looks at ``inputs`` (the failing batch's inputs, as given to the model),
    then every parameter and buffer, then every gradient, then, if ``inputs``
    is given, the population states of a forward pass step by step (see the
    module docstring).  Costs one forward pass at most; called only after a
    loss turned non-finite.
    """
    if inputs is not None:
        site = _input_site(model, inputs)
        if site is not None:
            return site
    modules = list(_modules(model))
    for kind, node_id, module in modules:
        for name, t, nan_only in _tensors(module):
            site = _check(t, kind, node_id, name, "value", nan_only=nan_only)
            if site is not None:
                return site
    for kind, node_id, module in modules:
        for name, p in module.named_parameters(recurse=False):
            site = _check(p.grad, kind, node_id, name, "gradient")
            if site is not None:
                return site
    if inputs is not None:
        return _forward_site(model, inputs)
    return None
