r"""Backend-independent metrics on numpy arrays (twins of ``backends.torchsim.learning.metrics``).

Use them on what any backend returns (``ntgraph.simulate`` gives numpy arrays),
e.g. to score a network exported to NIR, ONNX or Lava the same way the torch
trainer scored it.  Layouts are time-major: ``[T, batch, n]``.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError, ValidationError

__all__ = ["mse", "pvar", "confusion_matrix"]


def _pair(pred: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ShapeError(f"{what}: expected pred and target of the same shape, got {pred.shape} and {target.shape}")
    return pred, target


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all elements: ``mean (pred - target)^2``."""
    pred, target = _pair(pred, target, "mse")
    return float(np.mean((pred - target) ** 2))


def pvar(pred: np.ndarray, target: np.ndarray, correction: int = 1) -> float:
    r"""Proportion of variance explained (NeuroTorch's PVar), averaged over the batch.

    For ``pred, target [T, batch, n]`` (``[T, n]`` is one sample): per sample
    ``b``, ``1 - mean_{t,i}(pred - target)^2 / var_{t,i}(target)``, then the mean
    over ``b``.  The variance runs over time and neurons together and divides
    by ``T*n - correction`` (default 1, as ``torch.var`` in NeuroTorch).
    """
    pred, target = _pair(pred, target, "pvar")
    if pred.ndim == 2:
        pred, target = pred[:, None, :], target[:, None, :]
    if pred.ndim != 3:
        raise ShapeError(f"pvar: expected arrays [T, batch, n] or [T, n], got shape {pred.shape}")
    err = np.mean((pred - target) ** 2, axis=(0, 2))
    flat = np.moveaxis(target, 1, 0).reshape(target.shape[1], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(1.0 - err / flat.var(axis=1, ddof=correction)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]``: row = true label, column = predicted class (scikit-learn's convention)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValidationError(f"confusion_matrix n_classes: expected a positive int, got {n_classes!r}")
    if pred.ndim != 1 or pred.shape != labels.shape:
        raise ShapeError(f"confusion_matrix: expected pred and labels of the same shape [N], got {pred.shape} and {labels.shape}")
    for name, v in (("pred", pred), ("labels", labels)):
        if not np.issubdtype(v.dtype, np.integer):
            raise ValidationError(f"confusion_matrix {name}: expected integer class indices, got dtype {v.dtype}")
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise ValidationError(f"confusion_matrix {name}: expected class indices in [0, {n_classes}), got [{v.min()}, {v.max()}]")
    return np.bincount(labels.astype(np.int64) * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
