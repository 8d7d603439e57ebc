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
  ``[T, B, F]`` directly; :meth:`ArrayDataset.encode` (or
  :meth:`Splits.encode`) wraps a static dataset so each sample is encoded on
  access into ``[T, F]``, without storing ``N*T*F`` spikes.

An :class:`ArrayDataset` has ``__len__`` and ``__getitem__(i) -> (x[i], y[i])``,
so it can be handed to ``torch.utils.data.DataLoader`` as it is.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import MissingDependencyError, ShapeError, ValidationError

__all__ = [
    "ArrayDataset",
    "EncodedDataset",
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
      ``layout``, units, the generating parameters); the splits of one load carry equal copies.
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

    def encode(self, encoder: Callable[..., np.ndarray], steps: int, *, seed: Union[None, int, tuple[int, ...]] = None,
               **kwargs: Any) -> "EncodedDataset":
        """This dataset with each ``x[i]`` encoded on access by ``encoder(x[i], steps, **kwargs)`` into ``[T, ...]``.

        See :class:`EncodedDataset`; ``seed`` is needed by random encoders
        (those with an ``rng`` argument, e.g. :func:`ntgraph.encoding.rate_encode`).
        """
        return EncodedDataset(self, encoder, steps, seed=seed, kwargs=kwargs)

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
        for idx in _batch_indices(len(self), batch_size, shuffle, seed, drop_last):
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


class EncodedDataset:
    """A static dataset whose samples are spike-encoded on access: ``ds[i] -> (encoder(x[i], steps), y[i])``.

    Each sample becomes ``[steps, *x[i].shape]`` (time first), so batches are
    ``[B, T, F]`` (``[T, B, F]`` with ``time_major=True``) and the dataset can
    be handed to a trainer or ``torch.utils.data.DataLoader`` as a map-style
    dataset.  Nothing ``N*T*F``-sized is stored.

    Random encoders (those taking ``rng``) get a generator seeded by
    ``(*seed, i)`` for sample ``i`` (``seed`` an int or a tuple of ints): the spikes of a sample are the same on
    every access (frozen noise), reproducible from ``seed`` and independent of
    the batch order.  For fresh noise every epoch, encode batches yourself
    with a seed that includes the epoch.

    ``y``, ``meta`` (with an ``"encoding"`` entry), ``aux``, ``n_classes`` and
    ``class_counts()`` are those of the base dataset; there is deliberately no
    ``x`` array (the encoded one would be too large).
    """

    def __init__(self, base: ArrayDataset, encoder: Callable[..., np.ndarray], steps: int, *,
                 seed: Union[None, int, tuple[int, ...]] = None, kwargs: Optional[Mapping[str, Any]] = None) -> None:
        if not callable(encoder):
            raise ValidationError(f"EncodedDataset encoder: expected a callable encoder(x, steps, ...), got {encoder!r}")
        self.base = base
        self.encoder = encoder
        self.steps = _check_positive_int("EncodedDataset steps", steps)
        self.kwargs = dict(kwargs or {})
        try:
            self._random = "rng" in inspect.signature(encoder).parameters
        except (TypeError, ValueError):
            self._random = False
        if self._random and "rng" in self.kwargs:
            raise ValidationError("EncodedDataset: pass seed=..., not rng=... (each sample gets its own generator)")
        if self._random:
            if seed is None:
                raise ValidationError(
                    f"EncodedDataset: the encoder {getattr(encoder, '__name__', encoder)!r} is random; "
                    "pass seed=... for reproducible spikes"
                )
        entropy: tuple[int, ...] = ()
        if seed is not None:
            items = seed if isinstance(seed, tuple) else (seed,)
            if not items or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in items):
                raise ValidationError(f"EncodedDataset seed: expected a non-negative int or a tuple of them, got {seed!r}")
            entropy = tuple(int(v) for v in items)
        self._entropy = entropy
        self.seed: Union[None, int, tuple[int, ...]] = None if not entropy else entropy[0] if len(entropy) == 1 else entropy
        name = getattr(encoder, "__name__", type(encoder).__name__)
        self.meta = {**base.meta, "encoding": {"encoder": name, "steps": self.steps, "seed": self.seed, **self.kwargs}}

    @property
    def y(self) -> np.ndarray:
        return self.base.y

    @property
    def aux(self) -> Mapping[str, np.ndarray]:
        return self.base.aux

    @property
    def n_classes(self) -> Optional[int]:
        return self.base.n_classes

    def class_counts(self) -> np.ndarray:
        return self.base.class_counts()

    def __len__(self) -> int:
        return len(self.base)

    def __repr__(self) -> str:
        return f"EncodedDataset({self.meta['encoding']['encoder']}, {self.steps} steps, {self.base!r})"

    def encode_sample(self, i: int) -> np.ndarray:
        """The encoded input of sample ``i``, ``[steps, *x[i].shape]``."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"EncodedDataset: index {i} out of range for {n} samples")
        i = int(i) % n
        kwargs = dict(self.kwargs)
        if self._random:
            kwargs["rng"] = np.random.default_rng([*self._entropy, i])
        return self.encoder(self.base.x[i], self.steps, **kwargs)

    def __getitem__(self, i: Any) -> tuple[np.ndarray, Any]:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValidationError(f"EncodedDataset: expected an integer index, got {i!r}")
        return self.encode_sample(int(i)), self.base.y[i]

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        for i in range(len(self)):
            yield self[i]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: Optional[SeedLike] = None,
                drop_last: bool = False, time_major: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Mini-batches ``x [B, T, ...]`` (``[T, B, ...]`` with ``time_major``), ``y [B, ...]``;
        the arguments are those of :meth:`ArrayDataset.batches`."""
        for idx in _batch_indices(len(self), batch_size, shuffle, seed, drop_last):
            xb = np.stack([self.encode_sample(int(i)) for i in idx])
            yb = self.base.y[idx]
            if time_major:
                xb = to_time_major(xb)
                if yb.ndim >= 3:
                    yb = to_time_major(yb)
            yield xb, yb


def _batch_indices(n: int, batch_size: int, shuffle: bool, seed: Optional[SeedLike], drop_last: bool) -> Iterator[np.ndarray]:
    batch_size = _check_positive_int("batches batch_size", batch_size)
    if shuffle:
        if seed is None:
            raise ValidationError("batches: shuffle=True needs a seed (an int, e.g. the epoch number, or a Generator)")
        order = make_rng(seed, "batches seed").permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


@dataclass(frozen=True, eq=False)
class Splits:
    """The train, validation and test parts of one dataset, drawn reproducibly from a seed."""

    train: Any  # ArrayDataset, or EncodedDataset after Splits.encode
    val: Any
    test: Any

    def __iter__(self) -> Iterator[Any]:
        return iter((self.train, self.val, self.test))

    @property
    def sizes(self) -> dict[str, int]:
        """Samples per split: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @property
    def meta(self) -> Mapping[str, Any]:
        """The dataset-wide metadata (that of the training split)."""
        return self.train.meta

    def encode(self, encoder: Callable[..., np.ndarray], steps: int, *, seed: Optional[int] = None,
               **kwargs: Any) -> "Splits":
        """Each split wrapped as an :class:`EncodedDataset` (see :meth:`ArrayDataset.encode`).

        Random encoders get the seeds ``(seed, 0)``, ``(seed, 1)``, ``(seed, 2)``
        for train, validation and test, so the splits' noise is independent.
        """
        parts = []
        for k, part in enumerate((self.train, self.val, self.test)):
            part_seed = None if seed is None else (_check_positive_int("Splits.encode seed", seed, 0), k)
            parts.append(EncodedDataset(part, encoder, steps, seed=part_seed, kwargs=kwargs))
        return Splits(*parts)  # type: ignore[arg-type]

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
