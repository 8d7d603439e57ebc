"""Learning algorithms: BPTT, truncated BPTT (and e-prop in :mod:`.eprop`).

Every algorithm is an object with one method::

    algorithm.train_step(model, inputs, target, objective, optimizer) -> StepResult

which computes gradients for one batch and (unless told otherwise) takes the
optimiser step.  All of them drive the same neuron step functions, through
:class:`~backends.torchsim.module.SimulationModule`.

An *objective* is any object with

* ``output``: the name of the Output node it reads;
* ``__call__(y, target) -> Tensor``: the loss of a whole sequence
  ``y [T, batch, n]`` (time-major);
* optionally ``step_loss(y_t, target, t, steps) -> Tensor`` with
  ``sum_t step_loss(y[t], ...) == objective(y, target)``: the per-step
  decomposition that online rules such as e-prop need;
* optionally ``regularizers``: callables ``(result) -> Tensor`` added to the loss.

Targets are either per sample (labels ``[batch]``, or ``[batch, n]``) or per
step (``[T, batch, n]``); truncated BPTT slices per-step targets by window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Union

import torch
from torch import Tensor

from ntgraph.errors import ValidationError

from ..module import SimState, SimulationModule, SimulationResult

__all__ = ["Objective", "StepResult", "Algorithm", "BPTT", "TBPTT", "total_loss", "time_slice", "num_steps"]

Inputs = Union[Tensor, Mapping[str, Tensor]]


class Objective(Protocol):
    output: str

    def __call__(self, y: Tensor, target: Tensor) -> Tensor: ...


@dataclass
class StepResult:
    """What one training step reports: the loss (a float) and the detached outputs ``[T, batch, n]``."""

    loss: float
    outputs: dict[str, Tensor]
    extras: dict[str, Any] = field(default_factory=dict)


class Algorithm(Protocol):
    def train_step(self, model: SimulationModule, inputs: Inputs, target: Tensor, objective: Objective,
                   optimizer: Optional[torch.optim.Optimizer]) -> StepResult: ...


def _time_dim(model: SimulationModule) -> int:
    return 1 if model.batch_first else 0


def num_steps(model: SimulationModule, inputs: Inputs) -> int:
    """Number of time steps of ``inputs`` (honours ``batch_first``)."""
    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    return int(first.shape[_time_dim(model)])


def time_slice(model: SimulationModule, inputs: Inputs, start: int, stop: int) -> Inputs:
    """Steps ``start:stop`` of the inputs (a tensor or a dict of tensors)."""
    dim = _time_dim(model)
    if isinstance(inputs, Mapping):
        return {k: v.narrow(dim, start, stop - start) for k, v in inputs.items()}
    return inputs.narrow(dim, start, stop - start)


def _target_slice(model: SimulationModule, target: Tensor, steps: int, start: int, stop: int) -> Tensor:
    """Per-step targets are sliced like the inputs; per-sample targets are passed whole."""
    dim = _time_dim(model)
    if target.ndim >= 3 and target.shape[dim] == steps:
        return target.narrow(dim, start, stop - start)
    return target


def _time_major(model: SimulationModule, y: Tensor) -> Tensor:
    return y.transpose(0, 1) if model.batch_first else y


def total_loss(model: SimulationModule, result: SimulationResult, target: Tensor, objective: Objective) -> Tensor:
    """``objective(y, target)`` on the objective's Output (time-major), plus its regularisers."""
    if objective.output not in result.outputs:
        raise ValidationError(
            f"objective.output: the graph has no Output {objective.output!r}; outputs: {list(result.outputs)}"
        )
    y = _time_major(model, result.outputs[objective.output])
    tgt = _time_major(model, target) if target.ndim >= 3 and model.batch_first else target
    loss = objective(y, tgt)
    for reg in getattr(objective, "regularizers", ()) or ():
        loss = loss + reg(result)
    return loss


def _check_finite(loss: Tensor) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss.detach())}; stopping before the optimiser step")


@dataclass
class BPTT:
    """Backpropagation through time: autograd through the whole sequence."""

    step_optimizer: bool = True

    def train_step(self, model: SimulationModule, inputs: Inputs, target: Tensor, objective: Objective,
                   optimizer: Optional[torch.optim.Optimizer]) -> StepResult:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        result = model(inputs)
        loss = total_loss(model, result, target, objective)
        _check_finite(loss)
        loss.backward()
        if optimizer is not None and self.step_optimizer:
            optimizer.step()
        return StepResult(float(loss.detach()), {k: v.detach() for k, v in result.outputs.items()})


@dataclass
class TBPTT:
    """Truncated BPTT with window ``K`` steps: the state is detached every ``K`` steps.

    ``step_per_window=True`` takes an optimiser step after every window (the
    gradients of one window only); otherwise gradients of all windows add up
    and one step is taken at the end.  Each window's loss is weighted by its
    share of the sequence, ``(stop - start)/T``, before ``backward``, so for
    losses that average over time the gradient has the scale of BPTT's (and
    equals it when ``window >= T``); the reported loss is the same weighted sum.
    """

    window: int
    step_per_window: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValidationError(f"TBPTT.window: expected a positive number of steps, got {self.window!r}")

    def train_step(self, model: SimulationModule, inputs: Inputs, target: Tensor, objective: Objective,
                   optimizer: Optional[torch.optim.Optimizer]) -> StepResult:
        steps = num_steps(model, inputs)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        state: Optional[SimState] = None
        pieces: dict[str, list[Tensor]] = {}
        total = 0.0
        for start in range(0, steps, self.window):
            stop = min(start + self.window, steps)
            result = model(time_slice(model, inputs, start, stop), state=state)
            share = (stop - start) / steps
            loss = total_loss(model, result, _target_slice(model, target, steps, start, stop), objective) * share
            _check_finite(loss)
            loss.backward()
            if optimizer is not None and self.step_per_window:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            total += float(loss.detach())
            state = result.state.detach()
            for k, v in result.outputs.items():
                pieces.setdefault(k, []).append(v.detach())
        if optimizer is not None and not self.step_per_window:
            optimizer.step()
        dim = _time_dim(model)
        return StepResult(total, {k: torch.cat(v, dim=dim) for k, v in pieces.items()})
