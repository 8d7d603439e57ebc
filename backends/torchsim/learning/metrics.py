r"""Metrics on network outputs (torch): accuracy, confusion matrix, MSE and PVar.

Layouts are time-major, as everywhere in the learning package: outputs
``y [T, batch, n]``, class labels ``[batch]`` (integers, or class
probabilities ``[batch, C]``), per-step targets ``[T, batch, n]``.

Classification reads a class out of ``y`` the same way the loss reduces time
(:func:`class_scores`), so that accuracy and the cross-entropy agree: the
predicted class is the class whose label would give the smallest loss.

Every scalar metric returns a 0-dim tensor (detached); the trainer averages
them over batches weighted by batch size, which for accuracy, MSE and PVar is
the value on the whole set.  Metric objects carry ``higher_is_better`` so the
trainer knows which direction is an improvement.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ntgraph.errors import ShapeError, ValidationError

__all__ = [
    "REDUCTIONS",
    "class_scores",
    "predict",
    "accuracy",
    "confusion_matrix",
    "mse",
    "pvar",
    "Accuracy",
    "MSEMetric",
    "PVar",
]

#: How a readout ``y [T, batch, C]`` is reduced over time for classification.
REDUCTIONS = ("max", "mean", "last")


def check_reduce(reduce: str, where: str = "reduce") -> str:
    if reduce not in REDUCTIONS:
        raise ValidationError(f"{where}: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}")
    return reduce


def _check_readout(y: Tensor, name: str = "y") -> None:
    if not isinstance(y, Tensor) or y.ndim != 3:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"{name}: expected a readout tensor [T, batch, classes], got {shape}")
    if y.shape[0] == 0:
        raise ShapeError(f"{name}: has no time steps (shape {tuple(y.shape)})")


def class_scores(y: Tensor, reduce: str = "max") -> Tensor:
    r"""Per-class scores ``[batch, C]`` of a readout ``y [T, batch, C]``, reduced over time.

    * ``"max"``:  ``max_t y_t``  (the logits the ``"max"`` cross-entropy uses);
    * ``"mean"``: ``mean_t log_softmax(y_t)``, the mean log-probability: the class
      maximising it minimises the ``"mean"`` loss ``mean_t CE(y_t, c)`` (its argmax
      is also that of ``mean_t y_t``, as the log-normaliser is the same for every class);
    * ``"last"``: ``y_{T-1}``.
    """
    check_reduce(reduce)
    _check_readout(y)
    if reduce == "max":
        return y.max(dim=0).values
    if reduce == "mean":
        return F.log_softmax(y, dim=-1).mean(dim=0)
    return y[-1]


def predict(y: Tensor, reduce: str = "max") -> Tensor:
    """Predicted class indices ``[batch]``: ``argmax`` of :func:`class_scores` (ties: the lowest index)."""
    return class_scores(y, reduce).argmax(dim=-1)


def _labels(target: Tensor, batch: int, n_classes: Optional[int], name: str = "labels") -> Tensor:
    """Integer labels ``[batch]`` from integer labels or class probabilities ``[batch, C]``."""
    if target.ndim == 2 and target.dtype.is_floating_point:
        if target.shape[0] != batch or (n_classes is not None and target.shape[1] != n_classes):
            raise ShapeError(f"{name}: expected class probabilities [{batch}, {n_classes}], got {tuple(target.shape)}")
        return target.argmax(dim=-1)
    if target.ndim != 1 or target.shape[0] != batch:
        raise ShapeError(f"{name}: expected integer class labels of shape [{batch}], got {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool or target.dtype.is_complex:
        raise ValidationError(f"{name}: expected integer class labels, got dtype {target.dtype}")
    return target


def accuracy(y: Tensor, labels: Tensor, reduce: str = "max") -> Tensor:
    """Fraction of samples whose predicted class (:func:`predict` with ``reduce``) equals the label.

    ``y [T, batch, C]``; ``labels [batch]`` integers (or class probabilities ``[batch, C]``, compared by argmax).
    """
    pred = predict(y, reduce)
    true = _labels(labels, y.shape[1], y.shape[2])
    return (pred == true.to(pred.device)).to(torch.get_default_dtype()).mean().detach()


def confusion_matrix(pred: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Counts ``[n_classes, n_classes]`` (int64): row = true label, column = predicted class.

    ``pred`` and ``labels`` are integer class indices ``[N]`` (scikit-learn's
    convention: ``M[i, j]`` = samples of class ``i`` predicted as ``j``).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValidationError(f"confusion_matrix n_classes: expected a positive int, got {n_classes!r}")
    pred = torch.as_tensor(pred)
    labels = torch.as_tensor(labels)
    if pred.ndim != 1 or labels.shape != pred.shape:
        raise ShapeError(
            f"confusion_matrix: expected pred and labels of the same shape [N], got {tuple(pred.shape)} and {tuple(labels.shape)}"
        )
    for name, v in (("pred", pred), ("labels", labels)):
        if v.dtype.is_floating_point or v.dtype.is_complex:
            raise ValidationError(f"confusion_matrix {name}: expected integer class indices, got dtype {v.dtype}")
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= n_classes):
            raise ValidationError(
                f"confusion_matrix {name}: expected class indices in [0, {n_classes}), got values in "
                f"[{int(v.min())}, {int(v.max())}]"
            )
    flat = labels.long().cpu() * n_classes + pred.long().cpu()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _check_pair(pred: Tensor, target: Tensor, what: str) -> None:
    if pred.shape != target.shape:
        raise ShapeError(f"{what}: expected pred and target of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements: ``mean (pred - target)^2``."""
    _check_pair(pred, target, "mse")
    return ((pred - target) ** 2).mean().detach()


def pvar(pred: Tensor, target: Tensor, correction: int = 1) -> Tensor:
    r"""Proportion of variance explained (NeuroTorch's PVar), averaged over the batch.

    For ``pred, target [T, batch, n]`` (a single sample ``[T, n]`` is batch 1):

    .. math::  \mathrm{PVar} = \frac{1}{B}\sum_b \Big(1 - \frac{\frac{1}{Tn}\sum_{t,i}(\hat y_{tbi} - y_{tbi})^2}
               {\mathrm{Var}_{t,i}(y_{\cdot b \cdot})}\Big)

    i.e. per sample ``b``: ``1 - mean_{t,n}(pred - target)^2 / var_{t,n}(target)``,
    then the mean over ``b``.  The variance runs over time and neurons together;
    ``correction=1`` (default) divides by ``T*n - 1`` as ``torch.var`` does in
    NeuroTorch's ``PVarianceLoss``, ``correction=0`` by ``T*n``.  1 is a perfect
    fit; predicting the sample's mean gives ``1 - (Tn - 1)/(Tn)`` ~ 0 (exactly 0
    with ``correction=0``); worse predictions are negative.  A sample whose
    target is constant has zero variance and gives ``-inf`` (or ``nan`` if also
    predicted exactly).
    """
    _check_pair(pred, target, "pvar")
    if pred.ndim == 2:
        pred, target = pred[:, None, :], target[:, None, :]
    if pred.ndim != 3:
        raise ShapeError(f"pvar: expected tensors [T, batch, n] or [T, n], got shape {tuple(pred.shape)}")
    err = ((pred - target) ** 2).mean(dim=(0, 2))
    var = target.transpose(0, 1).reshape(target.shape[1], -1).var(dim=1, correction=correction)
    return (1.0 - err / var).mean().detach()


class Accuracy:
    """Metric object: :func:`accuracy` with a fixed time reduction (``higher_is_better``)."""

    higher_is_better = True

    def __init__(self, reduce: str = "max") -> None:
        self.reduce = check_reduce(reduce, "Accuracy.reduce")

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        return accuracy(y, target, self.reduce)

    def __repr__(self) -> str:
        return f"Accuracy(reduce={self.reduce!r})"


class MSEMetric:
    """Metric object: :func:`mse` (lower is better)."""

    higher_is_better = False

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        return mse(y, target)

    def __repr__(self) -> str:
        return "MSEMetric()"


class PVar:
    """Metric object: :func:`pvar` (``higher_is_better``)."""

    higher_is_better = True

    def __init__(self, correction: int = 1) -> None:
        self.correction = correction

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        return pvar(y, target, self.correction)

    def __repr__(self) -> str:
        return f"PVar(correction={self.correction})"
