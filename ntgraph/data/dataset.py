"""Array datasets, reproducible splits and batching, shared by every loader.

Layout conventions (all loaders follow them):

* A dataset holds ``x`` with the **sample axis first**: ``[N, F]`` for static
  features (images, flattened), ``[N, T, F]`` for sequences and spike rasters
  (one sample is ``[T, F]``: time first, so it is *time-major-ready*).
* ``y`` is ``[N]`` int64 class labels for classification, or ``[N, T, n]``
  float targets for regression.
* ntgraph's simulators and trainers take time-major batches ``[T, B, F]``;
  :func:`to_time_major` turns a stack of samples ``[B, T, F]`` (or a list of
  ``[T, F]`` arrays) into that layout, and ``ArrayDataset.batches(...,
  time_major=True)`` does it for every batch.  Static features ``[B, F]`` get a
  time axis from an encoder of :mod:`ntgraph.encoding`, which returns
  ``[T, B, F]`` directly.

An :class:`ArrayDataset` has ``__len__`` and ``__getitem__(i) -> (x[i], y[i])``,
so it can be handed to ``torch.utils.data.DataLoader`` as it is.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import MissingDependencyError, ShapeError, ValidationError

__all__ = [
    "ArrayDataset",
    "Splits",
    "SeedLike",
    "stratified_split",
    "time_split",
    "to_time_major",
    "make_rng",
    "import_optional",
]

#: A seed accepted by every loader and encoder: an int, a ``SeedSequence`` or a ``Generator``.
SeedLike = Union[int, np.integer, np.random.SeedSequence, np.random.Generator]


def make_rng(seed: Optional[SeedLike], what: str = "seed") -> np.random.Generator:
    """A numpy ``Generator`` from an int seed, a ``SeedSequence`` or a ``Generator`` (returned as is).

    ``None`` gives a fresh, unseeded generator (not reproducible).  Any other
    type raises :class:`~ntgraph.errors.ValidationError` naming ``what``.
    """
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValidationError(f"{what}: expected a non-negative integer seed, got {seed}")
        return np.random.default_rng(int(seed))
    raise ValidationError(f"{what}: expected an int seed, a numpy SeedSequence or Generator, got {seed!r}")


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`~ntgraph.errors.MissingDependencyError` naming the extra.

    ``purpose`` says what needs it, e.g. ``"load_digits"``; the message tells
    the user to ``pip install 'ntgraph[extra]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs the optional package {top!r}, which cannot be imported ({exc}); "
            f"install it with: pip install 'ntgraph[{extra}]'"
        ) from exc


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValidationError(f"{name}: expected a fraction in [0, 1), got {value!r}")
    return float(value)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Samples ``x`` with targets ``y`` (sample axis first) plus dataset-wide ``meta``.

    * ``x``: ``[N, ...]`` inputs, e.g. ``[N, F]`` features or ``[N, T, F]`` spike rasters.
    * ``y``: ``[N, ...]`` targets, e.g. ``[N]`` int64 labels.
    * ``meta``: facts about the whole dataset (``name``, ``n_classes``,
      ``layout``, units, the generating parameters).  Shared by the splits of one load.
    * ``aux``: per-sample side information, each ``[N, ...]`` (e.g. Randman's
      intrinsic coordinates); indexing and :meth:`subset` carry it along.

    ``ds[i]`` is the pair ``(x[i], y[i])``; ``ds[a:b]`` or ``ds[index_array]``
    is a new :class:`ArrayDataset`.  The arrays belong to the dataset: copy
    them before changing them in place.
    """

    x: np.ndarray
    y: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    aux: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim == 0 or y.ndim == 0:
            raise ShapeError(f"ArrayDataset: x and y need a sample axis, got shapes {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise ShapeError(f"ArrayDataset: x has {len(x)} samples but y has {len(y)}; expected the same number")
        aux = {}
        for name, arr in dict(self.aux).items():
            arr = np.asarray(arr)
            if arr.ndim == 0 or len(arr) != len(x):
                raise ShapeError(f"ArrayDataset.aux[{name!r}]: expected {len(x)} samples on axis 0, got shape {arr.shape}")
            aux[name] = arr
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "aux", aux)
        object.__setattr__(self, "meta", dict(self.meta))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self.x[index], self.y[index]
        return self.subset(index)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.x[i], self.y[i]

    def __repr__(self) -> str:
        name = self.meta.get("name", "")
        return (f"ArrayDataset({name + ': ' if name else ''}{len(self)} samples, "
                f"x {tuple(self.x.shape)} {self.x.dtype}, y {tuple(self.y.shape)} {self.y.dtype})")

    def subset(self, index: Any) -> "ArrayDataset":
        """The samples selected by a slice, an integer array or a boolean mask (copies)."""
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ShapeError(f"ArrayDataset.subset: boolean mask of shape {index.shape}, expected ({len(self)},)")
        elif index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValidationError(f"ArrayDataset.subset: expected a slice, integer indices or a boolean mask, got dtype {index.dtype}")
        else:
            index = index.astype(np.intp, copy=False)
        return ArrayDataset(self.x[index], self.y[index], self.meta, {k: v[index] for k, v in self.aux.items()})

    @property
    def n_classes(self) -> Optional[int]:
        """Number of classes (from ``meta``), or ``None`` for a regression dataset."""
        n = self.meta.get("n_classes")
        return None if n is None else int(n)

    def class_counts(self) -> np.ndarray:
        """Samples per class, ``[n_classes]`` (classification datasets only)."""
        if self.n_classes is None:
            raise ValidationError(f"{self!r}: not a classification dataset (meta has no 'n_classes')")
        return np.bincount(self.y.astype(np.int64), minlength=self.n_classes)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: Optional[SeedLike] = None,
        drop_last: bool = False,
        time_major: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over ``(x, y)`` mini-batches.

        * ``shuffle``: visit the samples in a random order drawn from ``seed``
          (required then, for reproducibility: pass the epoch number, or one
          ``Generator`` for the whole run to get a new order every epoch).
        * ``drop_last``: skip a final batch smaller than ``batch_size``.
        * ``time_major``: return ``x`` (and ``y`` when it has a time axis too,
          i.e. ``y.ndim >= 3``) as ``[T, B, ...]`` instead of ``[B, T, ...]``.

        Batches are copies, ``x`` ``[B, ...]`` and ``y`` ``[B, ...]``.
        """
        batch_size = _check_positive_int("batches batch_size", batch_size)
        n = len(self)
        if shuffle:
            if seed is None:
                raise ValidationError("batches: shuffle=True needs a seed (an int, e.g. the epoch number, or a Generator)")
            order = make_rng(seed, "batches seed").permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = self.x[idx], self.y[idx]
            if time_major:
                if xb.ndim < 3:
                    raise ShapeError(
                        f"batches(time_major=True): samples of shape {self.x.shape[1:]} have no time axis; "
                        "expected [T, F] per sample (encode static features with ntgraph.encoding first)"
                    )
                xb = to_time_major(xb)
                if yb.ndim >= 3:
                    yb = to_time_major(yb)
            yield xb, yb


@dataclass(frozen=True, eq=False)
class Splits:
    """The train, validation and test parts of one dataset, drawn reproducibly from a seed."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset

    def __iter__(self) -> Iterator[ArrayDataset]:
        return iter((self.train, self.val, self.test))

    @property
    def sizes(self) -> dict[str, int]:
        """Samples per split: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @property
    def meta(self) -> Mapping[str, Any]:
        """The dataset-wide metadata (that of the training split)."""
        return self.train.meta

    def __repr__(self) -> str:
        name = self.meta.get("name", "")
        return f"Splits({name + ': ' if name else ''}train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def stratified_split(
    y: np.ndarray,
    seed: SeedLike,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a class-stratified train/validation/test split of labels ``y``.

    For every class ``c`` with ``n_c`` samples, ``round(n_c*test_fraction)``
    samples go to test and ``round(n_c*val_fraction)`` to validation (drawn
    without replacement from ``seed``), the rest to train; so each split has
    the class proportions of ``y`` up to one sample per class.  Each split's
    indices come back in a random order (not grouped by class).
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValidationError(
            f"val_fraction + test_fraction: expected < 1 so that training data remain, got {val_fraction} + {test_fraction}"
        )
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"stratified_split: expected 1-D labels, got shape {y.shape}")
    rng = make_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = _round_half_up(len(idx) * test_fraction)
        n_val = _round_half_up(len(idx) * val_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    out = tuple(rng.permutation(np.concatenate(p)) if p else np.zeros(0, np.intp) for p in parts)
    if len(out[0]) == 0:
        raise ValidationError(f"stratified_split: no training samples left ({len(y)} samples, "
                              f"val_fraction={val_fraction}, test_fraction={test_fraction})")
    return out  # type: ignore[return-value]


def time_split(
    n_steps: int,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> tuple[range, range, range]:
    """Contiguous train/validation/test ranges of ``n_steps`` time steps, in that order.

    Training data come first, then validation, then test (held-out *future*
    time): ``val`` has ``round(n*val_fraction)`` steps, ``test``
    ``round(n*test_fraction)``, ``train`` the rest.
    """
    n_steps = _check_positive_int("time_split n_steps", n_steps)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    n_test = _round_half_up(n_steps * test_fraction)
    n_val = _round_half_up(n_steps * val_fraction)
    n_train = n_steps - n_val - n_test
    if n_train < 1:
        raise ValidationError(f"time_split: no training steps left ({n_steps} steps, "
                              f"val_fraction={val_fraction}, test_fraction={test_fraction})")
    return range(0, n_train), range(n_train, n_train + n_val), range(n_train + n_val, n_steps)


def to_time_major(samples: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    """Stack samples ``[T, ...]`` into a time-major batch ``[T, B, ...]``.

    ``samples`` is a batch ``[B, T, ...]`` (an array) or a sequence of ``B``
    arrays ``[T, ...]`` of the same shape.  Returns a C-contiguous array.
    """
    if isinstance(samples, np.ndarray):
        batch = samples
    else:
        items = [np.asarray(s) for s in samples]
        if not items:
            raise ShapeError("to_time_major: expected at least one sample")
        shapes = {s.shape for s in items}
        if len(shapes) != 1:
            raise ShapeError(f"to_time_major: samples have different shapes {sorted(shapes)}; expected one shape [T, ...]")
        batch = np.stack(items)
    if batch.ndim < 2:
        raise ShapeError(f"to_time_major: expected a batch [B, T, ...], got shape {batch.shape}")
    return np.ascontiguousarray(np.swapaxes(batch, 0, 1))
