r"""Randman: the random-manifold spike-timing benchmark of Zenke & Vogels (2021).

F. Zenke and T. P. Vogels, "The remarkable robustness of surrogate gradient
learning for instilling complex function in spiking neural networks",
*Neural Computation* 33(4):899-925, 2021, doi:10.1162/neco_a_01367.

The task, as the paper describes it: each class is a smooth random manifold of
intrinsic dimension ``D`` embedded in the ``F``-dimensional space of input
channels; a sample is a random point on its class's manifold, and each
embedding coordinate in ``[0, 1]`` is presented as the time of the one spike
of that input channel.  The difficulty is set by the number of classes, the
manifold dimension ``D`` and the smoothness ``alpha`` (rougher manifolds are
harder to separate).  This module is written from that description.

Construction used here (one manifold per class ``c``, channel ``i = 1..F``,
intrinsic coordinates ``xi in [0, 1)^D``)::

    g_ci(xi) = sum_{d=1..D} sum_{k=1..K} k**(-alpha) * A_cidk * sin(2*pi*(k*xi_d + P_cidk))
    u_ci(xi) = clip((g_ci(xi) - lo_ci) / (hi_ci - lo_ci), 0, 1)
    s_ci(xi) = min(floor(u_ci(xi) * S), S - 1)          spike step of channel i

with amplitudes ``A ~ U(0, 1)`` and phases ``P ~ U(0, 1)`` drawn once per
class, ``K = n_harmonics``, ``lo``/``hi`` the per-channel extremes of ``g``
over ``n_reference`` reference points of the same manifold (a uniform grid
for ``D = 1``, random points otherwise), and ``S = spike_steps`` (default:
``steps``).  The power of harmonic ``k`` falls as ``k**(-2*alpha)``, so
``alpha`` is the smoothness: large ``alpha`` leaves mostly the first harmonic.
Integer frequencies make every ``g`` periodic in each ``xi_d`` (for ``D = 1``
each manifold is a closed curve).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..errors import ShapeError, ValidationError
from .dataset import ArrayDataset, SeedLike, Splits, _check_positive_int, stratified_split

__all__ = ["RandomManifold", "randman"]


def _seed_sequence(seed: SeedLike, what: str = "seed") -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63)))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ValidationError(f"{what}: expected a non-negative int seed, a SeedSequence or a Generator, got {seed!r}")


class RandomManifold:
    r"""One smooth random ``dim``-dimensional manifold in ``[0, 1]^n_channels``.

    ``manifold(xi)`` maps intrinsic coordinates ``xi`` ``[N, dim]`` in
    ``[0, 1)`` to embedding coordinates ``u`` ``[N, n_channels]`` in ``[0, 1]``
    (see the module docstring for the equations).  All randomness is drawn in
    the constructor from ``seed``.
    """

    def __init__(self, n_channels: int, dim: int, alpha: float, n_harmonics: int, seed: SeedLike,
                 *, n_reference: int = 2048) -> None:
        self.n_channels = _check_positive_int("randman n_channels", n_channels)
        self.dim = _check_positive_int("randman dim_manifold", dim)
        self.n_harmonics = _check_positive_int("randman n_harmonics", n_harmonics)
        n_reference = _check_positive_int("randman n_reference", n_reference, 2)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
                or not math.isfinite(alpha) or alpha < 0:
            raise ValidationError(f"randman alpha: expected a finite smoothness >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        rng = np.random.default_rng(_seed_sequence(seed))
        shape = (self.n_channels, self.dim, self.n_harmonics)
        k = np.arange(1, self.n_harmonics + 1, dtype=np.float64)
        self.frequencies = k                                   # [K]
        self.amplitudes = rng.random(shape) * k ** (-self.alpha)  # A_idk * k^-alpha, [F, D, K]
        self.phases = rng.random(shape)                        # P_idk in [0, 1), [F, D, K]
        if self.dim == 1:
            ref = (np.arange(n_reference, dtype=np.float64) / n_reference)[:, None]
        else:
            ref = rng.random((n_reference, self.dim))
        g = self.raw(ref)
        self.lo = g.min(axis=0)
        self.hi = g.max(axis=0)

    def raw(self, xi: np.ndarray) -> np.ndarray:
        """The unnormalised embedding ``g(xi)``, ``[N, n_channels]``."""
        xi = np.asarray(xi, dtype=np.float64)
        if xi.ndim != 2 or xi.shape[1] != self.dim:
            raise ShapeError(f"RandomManifold: expected coordinates [N, {self.dim}], got shape {xi.shape}")
        out = np.zeros((xi.shape[0], self.n_channels))
        for d in range(self.dim):  # loop over the (few) intrinsic dimensions keeps memory at N*F*K
            arg = xi[:, d, None, None] * self.frequencies[None, None, :] + self.phases[None, :, d, :]
            out += np.einsum("nik,ik->ni", np.sin(2.0 * np.pi * arg), self.amplitudes[:, d, :])
        return out

    def __call__(self, xi: np.ndarray) -> np.ndarray:
        """The normalised embedding ``u(xi)`` in ``[0, 1]``, ``[N, n_channels]``."""
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return np.clip((self.raw(xi) - self.lo) / span, 0.0, 1.0)


def randman(
    seed: SeedLike = 0,
    *,
    n_classes: int = 10,
    n_samples_per_class: int = 100,
    n_channels: int = 20,
    dim_manifold: int = 1,
    alpha: float = 2.0,
    n_harmonics: int = 8,
    steps: int = 100,
    spike_steps: Optional[int] = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    n_reference: int = 2048,
    dtype: type = np.float32,
) -> Splits:
    """Generate a Randman classification task (Zenke & Vogels 2021) as spike rasters.

    Each of ``n_classes`` classes is a :class:`RandomManifold` of dimension
    ``dim_manifold`` in ``n_channels`` dimensions with smoothness ``alpha``;
    ``n_samples_per_class`` points are drawn uniformly in its intrinsic
    coordinates, and each channel fires exactly one spike, at step
    ``s = min(floor(u * spike_steps), spike_steps - 1)`` of its coordinate
    ``u`` in ``[0, 1]``.  ``spike_steps`` (default ``steps``) lets the raster
    end with silent steps so a network can respond to late spikes.

    Returns :class:`~ntgraph.data.Splits` (class-stratified from ``seed``) with

    * ``x``: ``[N, steps, n_channels]`` spike rasters of 0/1 in ``dtype``, one
      sample ``[T, F]`` time-major-ready (:func:`~ntgraph.data.to_time_major`);
      every row ``x[n, :, i]`` holds exactly one spike;
    * ``y``: ``[N]`` int64 class labels;
    * ``aux["coords"]``: ``[N, dim_manifold]`` intrinsic coordinates;
      ``aux["spike_step"]``: ``[N, n_channels]`` int64 spike steps;
    * ``meta``: the generating parameters.

    The time step is a unit of the raster: choose ``dt`` when simulating.
    ``seed`` fixes the manifolds, the samples and the split; the same seed
    gives bit-identical arrays.
    """
    n_classes = _check_positive_int("randman n_classes", n_classes, 2)
    n_samples_per_class = _check_positive_int("randman n_samples_per_class", n_samples_per_class)
    steps = _check_positive_int("randman steps", steps)
    spike_steps = steps if spike_steps is None else _check_positive_int("randman spike_steps", spike_steps)
    if spike_steps > steps:
        raise ValidationError(f"randman spike_steps: expected at most steps={steps}, got {spike_steps}")
    if np.dtype(dtype).kind not in "fiub":
        raise ValidationError(f"randman dtype: expected a numeric numpy dtype, got {dtype!r}")
    ss_manifolds, ss_samples, ss_split = _seed_sequence(seed).spawn(3)
    sample_rng = np.random.default_rng(ss_samples)
    n_total = n_classes * n_samples_per_class
    x = np.zeros((n_total, steps, n_channels), dtype=dtype)
    coords = np.empty((n_total, _check_positive_int("randman dim_manifold", dim_manifold)))
    spike_step = np.empty((n_total, _check_positive_int("randman n_channels", n_channels)), dtype=np.int64)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_samples_per_class)
    for c, ss in enumerate(ss_manifolds.spawn(n_classes)):
        manifold = RandomManifold(n_channels, dim_manifold, alpha, n_harmonics, ss, n_reference=n_reference)
        rows = slice(c * n_samples_per_class, (c + 1) * n_samples_per_class)
        xi = sample_rng.random((n_samples_per_class, dim_manifold))
        u = manifold(xi)
        coords[rows] = xi
        spike_step[rows] = np.minimum(np.floor(u * spike_steps).astype(np.int64), spike_steps - 1)
    n_idx, ch_idx = np.meshgrid(np.arange(n_total), np.arange(n_channels), indexing="ij")
    x[n_idx, spike_step, ch_idx] = 1
    meta = {"name": "randman", "n_classes": n_classes, "n_features": n_channels,
            "layout": f"[N, {steps}, {n_channels}] spike raster (time, channel), one spike per channel",
            "n_samples_per_class": n_samples_per_class, "dim_manifold": dim_manifold, "alpha": float(alpha),
            "n_harmonics": n_harmonics, "steps": steps, "spike_steps": spike_steps, "n_reference": n_reference,
            "seed": int(seed) if isinstance(seed, (int, np.integer)) else repr(seed),
            "reference": "Zenke & Vogels 2021, Neural Computation 33(4):899-925"}
    parts = stratified_split(y, np.random.default_rng(ss_split), val_fraction=val_fraction, test_fraction=test_fraction)
    return Splits(*(ArrayDataset(x[i], y[i], meta, {"coords": coords[i], "spike_step": spike_step[i]}) for i in parts))
