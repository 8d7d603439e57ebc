"""Mini-batches from a dataset, in an order drawn from a seeded ``torch.Generator``.

:class:`Batches` turns a dataset of per-sample inputs ``x_i [T, F]`` and
targets ``y_i`` into batches laid out for the model: ``x [T, B, F]``
(``[B, T, F]`` for ``batch_first`` models), labels ``[B]`` or per-sample
vectors ``[B, n]``, per-step targets ``y_i [T, n]`` -> ``[T, B, n]``.

Accepted datasets (duck-typed, so no dependency on a particular loader):

* a pair ``(X, Y)`` of arrays or tensors with the samples along axis 0;
* an object with array attributes ``x`` and ``y`` (e.g. ``ntgraph.data``'s ``ArrayDataset``);
* a map-style dataset: ``len(ds)`` and ``ds[i] -> (x_i, y_i)`` (e.g. ``ntgraph.data``'s
  ``EncodedDataset``, which encodes spikes per sample, or ``torch.utils.data.TensorDataset``).

Each pass draws a permutation from the generator (``shuffle=True``), so the
order depends only on the generator's state, which the trainer checkpoints.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from ntgraph.errors import ShapeError, ValidationError

__all__ = ["Batches", "is_array_dataset"]


def _is_array(a: Any) -> bool:
    return isinstance(a, (np.ndarray, Tensor))


def is_array_dataset(data: Any) -> bool:
    """True for ``(X, Y)`` array pairs and objects with array attributes ``x`` and ``y``."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(_is_array(a) for a in data):
        return True
    return _is_array(getattr(data, "x", None)) and _is_array(getattr(data, "y", None))


def _as_tensor(a: Any) -> Tensor:
    """A tensor sharing memory with ``a`` where safe (C-contiguous, writable numpy), else a copy; 0-d stays 0-d."""
    if isinstance(a, Tensor):
        return a
    arr = np.asarray(a)
    if arr.dtype == object:
        return torch.as_tensor(arr.tolist())
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = np.array(arr, order="C")
    return torch.from_numpy(arr)


class Batches:
    """Batches of ``batch_size`` samples of ``dataset`` (see the module docstring), re-shuffled every pass."""

    def __init__(self, dataset: Any, batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
                 generator: Optional[torch.Generator] = None, batch_first: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.batch_first = bool(batch_first)
        self._x: Any = None
        self._y: Any = None
        self._dataset: Any = None
        if is_array_dataset(dataset):
            x, y = dataset if isinstance(dataset, (tuple, list)) else (dataset.x, dataset.y)
            if len(x) != len(y):
                raise ShapeError(f"dataset: x has {len(x)} samples but y has {len(y)}")
            if x.ndim != 3:
                raise ShapeError(f"dataset: expected inputs x [samples, T, features], got shape {tuple(x.shape)}")
            self._x, self._y = x, y
            self.n = len(x)
        elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
            self._dataset = dataset
            self.n = len(dataset)
        else:
            raise ValidationError(
                f"dataset: expected (X, Y) arrays, an object with arrays .x and .y, or a map-style dataset "
                f"(len and [i] -> (x, y)), got {type(dataset).__name__}"
            )
        if self.n == 0:
            raise ValidationError("dataset: has no samples")

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(0)

    def iterate(self, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass; ``skip`` batches are passed over without being built (used to resume mid-pass).

        The permutation is drawn when the pass starts (eagerly), so the
        generator's state right after this call does not depend on how far the pass is consumed.
        """
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        return self._batches(order, skip)

    def _batches(self, order: Tensor, skip: int) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(skip, len(self)):
            yield self._collate(order[k * self.batch_size:(k + 1) * self.batch_size])

    def _collate(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        if self._x is not None:
            x = _as_tensor(self._x[idx] if isinstance(self._x, Tensor) else self._x[idx.numpy()])
            y = _as_tensor(self._y[idx] if isinstance(self._y, Tensor) else self._y[idx.numpy()])
        else:
            samples = [self._dataset[i] for i in idx.tolist()]
            try:
                x = torch.stack([_as_tensor(s[0]) for s in samples])
                y = torch.stack([_as_tensor(s[1]) for s in samples])
            except (TypeError, IndexError, RuntimeError) as exc:
                raise ShapeError(f"dataset: samples must be (x [T, F], y) pairs of equal shapes: {exc}") from exc
        if x.ndim != 3:
            raise ShapeError(f"dataset: expected per-sample inputs x [T, features], got a batch of shape {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
            if y.ndim >= 3:  # per-step targets [B, T, n] -> [T, B, n]
                y = y.transpose(0, 1)
        return x, y
