"""Figures with matplotlib (imported lazily, headless ``Agg`` backend); files written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ._atomic import atomic_write

__all__ = ["spike_raster"]


def spike_raster(
    path: "str | os.PathLike[str]",
    spikes: np.ndarray,
    dt: float,
    *,
    sign: Optional[np.ndarray] = None,
    inputs: Optional[np.ndarray] = None,
    traces: Optional[np.ndarray] = None,
    title: str = "",
    trace_labels: Optional[Sequence[str]] = None,
) -> Path:
    """Write a spike raster PNG.

    ``spikes``: ``[T, n]`` (one batch element).  ``sign`` colours excitatory
    (+1, blue) and inhibitory (-1, red) neurons.  Optional panels: an input
    raster ``inputs [T, m]`` above, and analog ``traces [T, k]`` below.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("inputs", "spikes", "traces") if {"inputs": inputs, "spikes": spikes, "traces": traces}[p] is not None]
    ratios = {"inputs": 1, "spikes": 3, "traces": 1.2}
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * sum(ratios[p] for p in panels) ** 0.8 + 1.5),
                             sharex=True, gridspec_kw={"height_ratios": [ratios[p] for p in panels]})
    axes = np.atleast_1d(axes)
    time_ms = np.arange(spikes.shape[0]) * dt * 1e3
    for ax, panel in zip(axes, panels):
        if panel == "inputs":
            t, k = np.nonzero(inputs)
            ax.scatter(time_ms[t], k, s=0.5, c="0.3", marker="|")
            ax.set_ylabel("input")
        elif panel == "spikes":
            t, k = np.nonzero(spikes)
            colours = np.where((sign[k] if sign is not None else np.ones_like(k)) > 0, "tab:blue", "tab:red")
            ax.scatter(time_ms[t], k, s=1.0, c=colours, marker="|")
            ax.set_ylabel("neuron")
            if sign is not None:
                ax.set_title("excitatory (blue) / inhibitory (red)", fontsize=9, loc="right")
        else:
            ax.plot(time_ms, traces, lw=0.8)
            ax.set_ylabel("readout")
            if trace_labels is not None:
                ax.legend(trace_labels, fontsize=6, ncol=5, loc="upper right")
    axes[-1].set_xlabel("time (ms)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, mode="wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return path
