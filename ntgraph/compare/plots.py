"""The report's figures, as PNG bytes (matplotlib imported lazily, headless ``Agg`` backend).

* :func:`raster_png` -- spike rasters side by side, one column per simulator
  (batch element 0), every spiking population stacked; spikes that differ
  from the reference are drawn in red;
* :func:`voltage_png` -- voltage traces of the first diverging neuron of each
  diverging simulator against the reference, with the threshold and the
  divergence step marked;
* :func:`agreement_png` -- a bar chart of the agreement per simulator, with
  the ``--min-agreement`` threshold when one is given.
"""

from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np

__all__ = ["raster_png", "voltage_png", "agreement_png"]

MAX_NEURONS = 400


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _spike_keys(report: Any) -> list[str]:
    return list(report.spike_keys)


def raster_png(report: Any, batch: int = 0) -> Optional[bytes]:
    """Side-by-side rasters; None when the network has no spiking population or nothing was recorded."""
    keys = _spike_keys(report)
    ref = report.reference
    keys = [k for k in keys if k in ref.arrays]
    if not keys:
        return None
    shown = [r for r in report.results if r.status in ("reference", "ok")]
    plt = _plt()
    dt = report.settings["dt"]
    fig, axes = plt.subplots(1, len(shown), figsize=(max(4.0, 3.2 * len(shown)), 4.2), sharey=True, squeeze=False)
    sizes = [min(ref.arrays[k].shape[2], MAX_NEURONS) for k in keys]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for ax, r in zip(axes[0], shown):
        for k, key, off, n in zip(range(len(keys)), keys, offsets, sizes):
            want = ref.arrays[key][:, batch, :n]
            t_ms = np.arange(want.shape[0]) * dt * 1e3
            have = r.arrays.get(key)
            if have is None or have.shape != ref.arrays[key].shape:
                ax.text(t_ms[-1] / 2 if len(t_ms) else 0, off + n / 2, "not recorded", ha="center", va="center",
                        fontsize=8, color="0.5")
                continue
            have = have[:, batch, :n]
            same = (have > 0) & (want > 0)
            extra = (have > 0) & ~(want > 0)
            missed = ~(have > 0) & (want > 0)
            for mask, colour, label in ((same, "0.15", "same"), (extra, "tab:red", "extra"), (missed, "tab:orange", "missing")):
                t, i = np.nonzero(mask)
                if t.size:
                    ax.scatter(t_ms[t], off + i, s=max(8.0, 600.0 / max(offsets[-1], 1)), c=colour, marker="|",
                               linewidths=1.4 if colour == "0.15" else 1.8, label=label)
            if k:
                ax.axhline(off - 0.5, color="0.7", lw=0.5)
        title = r.name if r.status == "reference" else f"{r.name}\nagreement {r.metrics.get('agreement', float('nan')):.4f}"
        ax.set_title(title if r.status != "reference" else f"{r.name}\n(reference)", fontsize=9)
        ax.set_xlabel("time (ms)")
        ax.set_ylim(-0.5, offsets[-1] - 0.5)
    axes[0][0].set_yticks([(a + b - 1) / 2 for a, b in zip(offsets[:-1], offsets[1:])])
    axes[0][0].set_yticklabels([k[: -len(".spikes")] for k in keys], fontsize=8)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower right", fontsize=8, ncol=3)
    fig.suptitle(f"spike rasters, batch element {batch} (red: extra spikes, orange: missing, vs the reference)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _png(fig)


def _trace_key(report: Any, r: Any) -> Optional[tuple[str, int, int, Optional[float]]]:
    d = r.divergence
    if d is None:
        return None
    pop = d.key.rsplit(".", 1)[0] if "." in d.key else d.key
    vkey = f"{pop}.v"
    key = vkey if vkey in report.reference.arrays and vkey in r.arrays else d.key
    th = report.thresholds.get(pop)
    return key, d.batch, d.neuron, (th[d.neuron] if th is not None and d.neuron < len(th) else None)


def voltage_png(report: Any) -> Optional[bytes]:
    """Traces of the first diverging neuron per diverging simulator (or, without divergence, one busy neuron)."""
    ref = report.reference
    dt = report.settings["dt"]
    panels = []
    for r in report.compared:
        found = _trace_key(report, r)
        if found is not None and found[0] in r.arrays:
            panels.append((r, *found))
    if not panels:
        vkeys = [k for k in ref.arrays if k.endswith(".v")]
        if not vkeys or not report.compared:
            return None
        key = vkeys[0]
        spikes = ref.arrays.get(key[:-2] + ".spikes")
        neuron = int(np.argmax(spikes[:, 0, :].sum(axis=0))) if spikes is not None else 0
        th = report.thresholds.get(key[:-2])
        panels = [(None, key, 0, neuron, th[neuron] if th is not None else None)]
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels) + 0.8), squeeze=False)
    for ax, (r, key, b, n, th) in zip(axes[:, 0], panels):
        want = ref.arrays[key][:, b, n]
        t_ms = np.arange(want.shape[0]) * dt * 1e3
        ax.plot(t_ms, want, color="black", lw=1.2, label=f"{ref.name} (reference)")
        others = [r] if r is not None else report.compared
        for other in others:
            if key in other.arrays:
                ax.plot(t_ms, other.arrays[key][:, b, n], lw=1.0, ls="--", label=other.name)
        if th is not None:
            ax.axhline(th, color="0.5", lw=0.8, ls=":", label="threshold")
        pop = key.rsplit(".", 1)[0]
        skey = f"{pop}.spikes"
        if skey in ref.arrays and key != skey:
            top = float(np.nanmax(want)) if np.isfinite(want).any() else 1.0
            marks = [(ref, "black", "v")] + [(o, None, "^") for o in (others if r is not None else [])]
            for k, (run, colour, m) in enumerate(marks):
                if skey in run.arrays:
                    t = np.nonzero(run.arrays[skey][:, b, n])[0]
                    if t.size:
                        ax.scatter(t_ms[t], np.full(t.size, top * (1.08 + 0.08 * k) if top > 0 else 0.1 * (k + 1)),
                                   marker=m, s=18, c=colour if colour else "tab:blue",
                                   label=f"{run.name} spikes")
        if r is not None and r.divergence is not None:
            ax.axvline(r.divergence.step * dt * 1e3, color="tab:red", lw=0.8, alpha=0.7, label="first divergence")
            ax.set_title(f"{r.name}: first divergence at step {r.divergence.step} in {r.divergence.key} "
                         f"(batch {b}, neuron {n}); trace: {key}", fontsize=9)
        else:
            ax.set_title(f"no divergence: {key} of neuron {n} (batch {b})", fontsize=9)
        ax.set_ylabel(key.rsplit(".", 1)[-1])
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (ms)")
    fig.tight_layout()
    return _png(fig)


def agreement_png(report: Any, min_agreement: Optional[float] = None) -> Optional[bytes]:
    """Bar chart of the agreement per simulator (skipped and failed ones shown as empty, labelled bars)."""
    rows = [r for r in report.results if r.status != "reference"]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.6))
    names = [r.name for r in rows]
    values = [r.agreement if r.status == "ok" and r.agreement is not None else 0.0 for r in rows]
    colours = []
    for r, v in zip(rows, values):
        if r.status != "ok":
            colours.append("0.85")
        elif min_agreement is not None and v < min_agreement:
            colours.append("tab:red")
        else:
            colours.append("tab:green" if v >= 1.0 else "tab:blue")
    bars = ax.bar(names, values, color=colours, edgecolor="0.3")
    for bar, r, v in zip(bars, rows, values):
        label = f"{v:.4f}" if r.status == "ok" else r.status
        ax.text(bar.get_x() + bar.get_width() / 2, max(v, 0.02) + 0.01, label, ha="center", va="bottom", fontsize=8)
    if min_agreement is not None:
        ax.axhline(min_agreement, color="tab:red", ls="--", lw=1, label=f"--min-agreement {min_agreement:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("agreement")
    ax.set_title(f"agreement with {report.reference.name}", fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    return _png(fig)
