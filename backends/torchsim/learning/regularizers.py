r"""Activity and weight regularisers, added to an objective's loss.

A regulariser is a callable ``reg(result) -> Tensor`` (a scalar) on the
:class:`~backends.torchsim.module.SimulationResult` of the forward pass; the
algorithms add it to the loss (``objective.regularizers``).  Two optional
attributes connect it to the model:

* ``records``: probes it reads (``"population.variable"``); the model must
  record them.  :func:`prepare_regularizers` (called by ``objective.prepare(model)``,
  which the trainer calls for you) adds them to the model's default probes
  with :meth:`SimulationModule.set_record`, so a plain ``model(x)`` returns them;
* ``prepare(model)``: binds it to the model (checks population/projection ids,
  reads ``dt``, finds the weight modules).

Provided:

* :class:`FiringRateTarget`: ``weight * mean_j (rbar_j - f* dt)^2`` with
  ``rbar_j = mean_{t,b} z_{tbj}`` the rate of neuron ``j`` in spikes per step
  (Bellec et al. 2020's convention; ``per_neuron=False`` penalises the
  population's mean rate instead);
* :class:`WeightL1`: ``weight * sum |W|``; :class:`WeightL2`: ``weight * sum W^2``
  (no factor 1/2), both on the *effective* weights (after Dale's law, masks,
  bounds), summed over the chosen projections.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import torch
from torch import Tensor

from ntgraph.errors import ValidationError

from ..module import _module_key

__all__ = ["FiringRateTarget", "WeightL1", "WeightL2", "prepare_regularizers"]


def prepare_regularizers(model: Any, regularizers: Iterable[Any]) -> None:
    """Bind every regulariser to ``model`` and add the probes they read to its default record."""
    needed: list[str] = []
    for reg in regularizers:
        prepare = getattr(reg, "prepare", None)
        if prepare is not None:
            prepare(model)
        needed.extend(getattr(reg, "records", ()) or ())
    if not needed:
        return
    current = list(model.recording)
    missing = [r for r in dict.fromkeys(needed) if r not in current]
    if missing:
        model.set_record(current + missing)


def _check_weight(value: Any, cls: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValidationError(f"{cls}.weight: expected a non-negative number, got {value!r}")
    return float(value)


class FiringRateTarget:
    r"""Pull the firing rates of a spiking population towards ``target_hz``.

    .. math::  R = w \cdot \frac{1}{N}\sum_j \big(\bar r_j - f^* \Delta t\big)^2,
               \qquad \bar r_j = \frac{1}{TB}\sum_{t,b} z_{tbj}

    with rates in spikes per time step (``f* dt`` is the target's), as in
    Bellec et al. 2020.  ``per_neuron=False`` uses the population mean
    ``(mean_j rbar_j - f* dt)^2`` instead, leaving individual rates free.
    ``dt`` (seconds) defaults to the model's time step at :meth:`prepare`.
    Reads the probe ``"<population>.spikes"``.
    """

    def __init__(self, population: str, target_hz: float, dt: Optional[float] = None, weight: float = 1.0,
                 per_neuron: bool = True) -> None:
        if not isinstance(population, str) or not population:
            raise ValidationError(f"FiringRateTarget.population: expected a population id, got {population!r}")
        if isinstance(target_hz, bool) or not isinstance(target_hz, (int, float)) or not target_hz >= 0:
            raise ValidationError(f"FiringRateTarget.target_hz: expected a rate >= 0 in Hz, got {target_hz!r}")
        if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0):
            raise ValidationError(f"FiringRateTarget.dt: expected a time step > 0 in seconds, got {dt!r}")
        self.population = population
        self.target_hz = float(target_hz)
        self.dt = None if dt is None else float(dt)
        self.weight = _check_weight(weight, "FiringRateTarget")
        self.per_neuron = bool(per_neuron)
        self.records = (f"{population}.spikes",)

    def prepare(self, model: Any) -> None:
        graph = model.graph
        if self.population not in graph.populations:
            raise ValidationError(
                f"FiringRateTarget.population: the graph has no Population {self.population!r}; "
                f"populations: {', '.join(graph.populations)}"
            )
        neuron = graph[self.population].model
        if neuron.output_var != "spikes":
            raise ValidationError(
                f"FiringRateTarget: Population '{self.population}' is {type(neuron).__name__} (output "
                f"{neuron.output_var!r}); expected a spiking population"
            )
        model_dt = float(model.options.dt)
        if self.dt is None:
            self.dt = model_dt
        elif abs(self.dt - model_dt) > 1e-12 * model_dt:
            raise ValidationError(
                f"FiringRateTarget('{self.population}').dt: {self.dt} s differs from the model's dt {model_dt} s"
            )

    def __call__(self, result: Any) -> Tensor:
        key = self.records[0]
        if key not in result.records:
            raise ValidationError(
                f"FiringRateTarget('{self.population}'): the result has no record {key!r}; call "
                f"objective.prepare(model) (the Trainer does) or compile with record=['{self.population}']"
            )
        if self.dt is None:
            raise ValidationError(f"FiringRateTarget('{self.population}'): dt unknown; give dt= or call prepare(model)")
        z = result.records[key]
        rate = z.reshape(-1, z.shape[-1]).mean(dim=0)  # spikes per step, per neuron (layout-independent)
        target = self.target_hz * self.dt
        if self.per_neuron:
            return self.weight * ((rate - target) ** 2).mean()
        return self.weight * (rate.mean() - target) ** 2

    def __repr__(self) -> str:
        return (f"FiringRateTarget({self.population!r}, target_hz={self.target_hz}, dt={self.dt}, "
                f"weight={self.weight}, per_neuron={self.per_neuron})")


class _WeightNorm:
    """Shared: which projections, bound at :meth:`prepare`."""

    name = "WeightNorm"

    def __init__(self, weight: float, projections: Optional[Sequence[str]] = None) -> None:
        self.weight = _check_weight(weight, self.name)
        if isinstance(projections, str):
            projections = [projections]
        self.projections = None if projections is None else tuple(projections)
        self._modules: Optional[list] = None

    def prepare(self, model: Any) -> None:
        graph = model.graph
        if self.projections is None:
            ids = [p for p in graph.projections if "weight" in model.projections[_module_key(p)].learnable]
        else:
            unknown = [p for p in self.projections if p not in graph.projections]
            if unknown:
                raise ValidationError(
                    f"{self.name}.projections: the graph has no projection(s) {unknown}; "
                    f"projections: {', '.join(graph.projections)}"
                )
            ids = list(self.projections)
        self._modules = [model.projections[_module_key(p)] for p in ids]

    def _weights(self) -> list[Tensor]:
        if self._modules is None:
            raise ValidationError(f"{self.name}: not bound to a model; call objective.prepare(model) (the Trainer does)")
        return [m.effective_weight() for m in self._modules]

    def __repr__(self) -> str:
        return f"{self.name}(weight={self.weight}, projections={self.projections})"


class WeightL1(_WeightNorm):
    """``weight * sum_p sum |W_p|`` over the effective weights of the projections (default: all with a learnable weight)."""

    name = "WeightL1"

    def __call__(self, result: Any) -> Tensor:
        ws = self._weights()
        if not ws:
            return torch.zeros(())
        return self.weight * torch.stack([w.abs().sum() for w in ws]).sum()


class WeightL2(_WeightNorm):
    """``weight * sum_p sum W_p^2`` over the effective weights of the projections (default: all with a learnable weight)."""

    name = "WeightL2"

    def __call__(self, result: Any) -> Tensor:
        ws = self._weights()
        if not ws:
            return torch.zeros(())
        return self.weight * torch.stack([(w ** 2).sum() for w in ws]).sum()
