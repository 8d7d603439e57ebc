r"""Objectives (losses) for the learning algorithms and the trainer.

An objective reads one Output of the network (``output``, time-major
``y [T, batch, n]``) and the batch's target, and returns a scalar loss.  It also
offers the per-step decomposition ``step_loss(y_t, target, t, steps)`` with

.. math::  \sum_{t=0}^{T-1} \mathrm{step\_loss}(y_t, \mathrm{target}, t, T) = \mathrm{loss}(y, \mathrm{target})

which online rules (e-prop) need, and optional activity/weight
``regularizers`` (:mod:`.regularizers`), added by the algorithms to the loss.

Classification, :class:`CrossEntropyOverTime` on integer labels ``[batch]``
(``CE`` = softmax cross-entropy averaged over the batch):

* ``reduce="max"``:  ``L = CE(max_t y_t)``, the max over time taken per class
  (as in Zenke's SpyTorch tutorials).  Not decomposable over time:
  ``step_loss`` raises.
* ``reduce="mean"``: ``L = mean_t CE(y_t)``, the per-step cross-entropy averaged
  over time (the loss of Bellec et al.'s e-prop classification tasks);
  ``step_loss = CE(y_t) / T``.  (This is *not* ``CE(mean_t y_t)``, which is not
  decomposable over time.)
* ``reduce="last"``: ``L = CE(y_{T-1})``; ``step_loss`` is zero except at the last step.

Regression, :class:`MSE` on per-step targets ``[T, batch, n]``:
``L = mean_{t,b,i} (y - target)^2``, ``step_loss = mean_{b,i}(y_t - target_t)^2 / T``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch.nn.functional as F
from torch import Tensor

from ntgraph.errors import ShapeError, ValidationError

from .metrics import Accuracy, PVar, _check_readout, _labels, check_reduce, predict
from .regularizers import prepare_regularizers

__all__ = ["CrossEntropyOverTime", "MSE"]


def _check_output(output: Any, cls: str) -> str:
    if not isinstance(output, str) or not output:
        raise ValidationError(f"{cls}.output: expected the name of an Output node, got {output!r}")
    return output


def _check_regularizers(regs: Iterable[Any], cls: str) -> tuple:
    regs = tuple(regs)
    for r in regs:
        if not callable(r):
            raise ValidationError(f"{cls}.regularizers: expected callables (result) -> Tensor, got {r!r}")
    return regs


class _Objective:
    """Shared pieces: the Output name, regularisers and :meth:`prepare`."""

    output: str
    regularizers: tuple

    def prepare(self, model: Any) -> None:
        """Bind the regularisers to ``model`` and make it record what they read (see :mod:`.regularizers`).

        The :class:`~.trainer.Trainer` calls it; in your own loop call it once before training.
        """
        prepare_regularizers(model, self.regularizers)

    def with_regularizers(self, *regularizers: Callable) -> "_Objective":
        """A copy with ``regularizers`` appended."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.regularizers = _check_regularizers(self.regularizers + tuple(regularizers), type(self).__name__)
        return clone


class CrossEntropyOverTime(_Objective):
    """Softmax cross-entropy on a readout ``y [T, batch, C]`` reduced over time (see the module docstring).

    ``target``: integer labels ``[batch]`` in ``[0, C)``, or class probabilities
    ``[batch, C]`` (soft labels, rows summing to 1).  The batch mean is taken.
    """

    def __init__(self, output: str = "y", reduce: str = "max", regularizers: Iterable[Callable] = ()) -> None:
        self.output = _check_output(output, "CrossEntropyOverTime")
        self.reduce = check_reduce(reduce, "CrossEntropyOverTime.reduce")
        self.regularizers = _check_regularizers(regularizers, "CrossEntropyOverTime")

    def _target(self, target: Tensor, batch: int, n_classes: int) -> Tensor:
        if not isinstance(target, Tensor):
            raise ValidationError(f"CrossEntropyOverTime target: expected a tensor, got {type(target).__name__}")
        if target.ndim == 2 and target.dtype.is_floating_point:
            _labels(target, batch, n_classes, "CrossEntropyOverTime target")
            return target
        labels = _labels(target, batch, n_classes, "CrossEntropyOverTime target")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise ValidationError(
                f"CrossEntropyOverTime target: expected labels in [0, {n_classes}) for Output {self.output!r} "
                f"with {n_classes} classes, got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        return labels.long()

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        _check_readout(y, f"CrossEntropyOverTime: Output {self.output!r}")
        steps, batch, n_classes = y.shape
        tgt = self._target(target, batch, n_classes)
        if self.reduce == "max":
            return F.cross_entropy(y.max(dim=0).values, tgt)
        if self.reduce == "last":
            return F.cross_entropy(y[-1], tgt)
        # mean over t of CE(y_t): every step has the same batch, so one flat CE is the mean of the step CEs
        flat_target = tgt.repeat(steps) if tgt.ndim == 1 else tgt.repeat(steps, 1)
        return F.cross_entropy(y.reshape(steps * batch, n_classes), flat_target)

    def step_loss(self, y_t: Tensor, target: Tensor, t: int, steps: int) -> Tensor:
        """The loss's share of step ``t`` (``y_t [batch, C]``); summing over ``t`` gives :meth:`__call__`."""
        if self.reduce == "max":
            raise ValidationError(
                "CrossEntropyOverTime(reduce='max') is not decomposable over time (the max couples all steps), so it "
                "has no step_loss for online learning rules such as e-prop; use reduce='mean' or reduce='last'"
            )
        if y_t.ndim != 2:
            raise ShapeError(f"CrossEntropyOverTime.step_loss: expected y_t [batch, classes], got {tuple(y_t.shape)}")
        tgt = self._target(target, y_t.shape[0], y_t.shape[1])
        if self.reduce == "last":
            if t == steps - 1:
                return F.cross_entropy(y_t, tgt)
            return y_t.sum() * 0.0  # zero, but still a function of y_t (gradient 0)
        return F.cross_entropy(y_t, tgt) / steps

    def predict(self, y: Tensor) -> Tensor:
        """Predicted classes ``[batch]``, consistent with the reduction (:func:`.metrics.predict`)."""
        return predict(y, self.reduce)

    def default_metrics(self) -> dict[str, Callable]:
        return {"accuracy": Accuracy(self.reduce)}

    def __repr__(self) -> str:
        return f"CrossEntropyOverTime(output={self.output!r}, reduce={self.reduce!r}, regularizers={list(self.regularizers)})"


class MSE(_Objective):
    """Mean squared error to per-step targets ``[T, batch, n]`` (same shape as the Output), mean over all elements."""

    def __init__(self, output: str = "y", regularizers: Iterable[Callable] = ()) -> None:
        self.output = _check_output(output, "MSE")
        self.regularizers = _check_regularizers(regularizers, "MSE")

    def _check(self, y: Tensor, target: Tensor, what: str) -> None:
        if not isinstance(target, Tensor) or target.shape != y.shape:
            shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ShapeError(f"MSE{what}: expected a target of shape {tuple(y.shape)} like Output {self.output!r}, got {shape}")

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        self._check(y, target, "")
        return F.mse_loss(y, target.to(y.dtype))

    def step_loss(self, y_t: Tensor, target: Tensor, t: int, steps: int) -> Tensor:
        """``mean_{b,i}(y_t - target[t])^2 / steps``; summing over ``t`` gives :meth:`__call__`."""
        if not isinstance(target, Tensor) or target.ndim != 3 or target.shape[0] != steps:
            raise ShapeError(f"MSE.step_loss: expected a per-step target [{steps}, batch, n], got "
                             f"{tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__}")
        self._check(y_t, target[t], ".step_loss")
        return F.mse_loss(y_t, target[t].to(y_t.dtype)) / steps

    def default_metrics(self) -> Mapping[str, Callable]:
        return {"pvar": PVar()}

    def __repr__(self) -> str:
        return f"MSE(output={self.output!r}, regularizers={list(self.regularizers)})"
