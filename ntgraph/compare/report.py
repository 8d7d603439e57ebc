"""The comparison report: per-simulator results, a text table, and the dict written as ``report.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .metrics import Divergence

__all__ = ["SimulatorResult", "ComparisonReport", "fmt_metric"]

STATUSES = ("reference", "ok", "skipped", "failed")


@dataclass
class SimulatorResult:
    """One simulator's row.

    ``status``: ``"reference"``, ``"ok"`` (ran and compared), ``"skipped"``
    (not installed: the backend is missing or cannot be imported) or
    ``"failed"`` (installed, but could not run this network; ``reason`` says
    why).  ``metrics`` holds the numbers (see :mod:`ntgraph.compare.metrics`);
    ``arrays`` the recorded arrays (not written to JSON).
    """

    name: str
    description: str
    backend: str
    route: str
    status: str
    reason: str = ""
    precision: str = ""
    wall_s: Optional[float] = None
    per_step_s: Optional[float] = None
    metrics: dict = field(default_factory=dict)
    divergence: Optional[Divergence] = None
    keys_compared: list = field(default_factory=list)
    keys_missing: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    diagnoses: list = field(default_factory=list)
    limitations: tuple = ()
    arrays: dict = field(default_factory=dict, repr=False)

    @property
    def compared(self) -> bool:
        return self.status in ("ok", "reference")

    @property
    def agreement(self) -> Optional[float]:
        return self.metrics.get("agreement")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "route": self.route,
            "status": self.status,
            "reason": self.reason,
            "precision": self.precision,
            "wall_s": self.wall_s,
            "per_step_s": self.per_step_s,
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "first_divergence": None if self.divergence is None else self.divergence.to_dict(),
            "keys_compared": list(self.keys_compared),
            "keys_missing": list(self.keys_missing),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "diagnoses": list(self.diagnoses),
            "limitations": list(self.limitations),
        }


def _json_number(v: Any) -> Any:
    """NaN and infinities are not JSON: write them as None (the markdown/HTML show "n/a" / "inf")."""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def fmt_metric(name: str, value: Any) -> str:
    """A metric as the tables print it."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf"
    if name in ("agreement", "spike_agreement", "output_agreement", "accuracy"):
        return f"{v:.4f}" if v < 1.0 else "1"
    if name == "spike_count_correlation":
        return f"{v:.4f}"
    if name in ("van_rossum", "max_voltage_error", "max_output_error"):
        return "0" if v == 0 else f"{v:.3g}"
    if name == "per_step_s":
        if v >= 1e-3:
            return f"{v * 1e3:.3g} ms"
        return f"{v * 1e6:.3g} µs"
    return f"{v:.4g}"


@dataclass
class ComparisonReport:
    """The result of :func:`ntgraph.compare.compare`.

    ``settings`` holds dt, timing, discretization, steps, batch, dtype, the
    van Rossum tau and the tolerances; ``results`` one
    :class:`SimulatorResult` per simulator, the reference first.
    """

    graph_name: str
    settings: dict
    results: list
    labels_given: bool = False
    #: spike probes compared, ``"pop.spikes"`` (the rasters' rows), in schedule order
    spike_keys: list = field(default_factory=list)
    #: per-neuron thresholds by population (the voltage plots' threshold line); not written to JSON
    thresholds: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> SimulatorResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no simulator {name!r} in this report; simulators: {[r.name for r in self.results]}")

    @property
    def reference(self) -> SimulatorResult:
        return next(r for r in self.results if r.status == "reference")

    @property
    def compared(self) -> list:
        """Results of the simulators that ran and were compared (not the reference)."""
        return [r for r in self.results if r.status == "ok"]

    def min_agreement(self) -> Optional[float]:
        """The lowest agreement of the simulators that ran (None if none ran besides the reference)."""
        values = [r.agreement for r in self.compared if r.agreement is not None]
        return min(values) if values else None

    def passes(self, threshold: float) -> bool:
        """True when at least one simulator was compared and every compared one has ``agreement >= threshold``.

        Skipped (not installed) and failed simulators are listed in the report but
        do not take part; with nothing compared there is nothing to vouch for.
        """
        worst = self.min_agreement()
        return worst is not None and worst >= threshold

    # ------------------------------------------------------------------ output
    COLUMNS = (
        ("agreement", "agreement"),
        ("spike_count_correlation", "count r"),
        ("van_rossum", "van Rossum"),
        ("first_divergence", "first divergence"),
        ("max_voltage_error", "max |Δv|"),
        ("accuracy", "accuracy"),
        ("per_step_s", "time/step"),
    )

    def rows(self) -> list[list[str]]:
        """Table rows: simulator, status, precision, then the :attr:`COLUMNS`."""
        rows = []
        for r in self.results:
            row = [r.name, r.status, r.precision or "-"]
            for key, _ in self.COLUMNS:
                if key == "per_step_s":
                    cell = fmt_metric(key, r.per_step_s)
                elif key == "accuracy":
                    cell = fmt_metric(key, r.metrics.get(key)) if self.labels_given and r.compared else "-"
                elif r.status == "reference":
                    cell = "(reference)" if key == "agreement" else "-"
                elif r.status != "ok":
                    cell = "-"
                elif key == "first_divergence":
                    cell = "none" if r.divergence is None else f"step {r.divergence.step} ({r.divergence.key})"
                else:
                    cell = fmt_metric(key, r.metrics.get(key))
                row.append(cell)
            rows.append(row)
        return rows

    def header(self) -> list[str]:
        tau = self.settings.get("van_rossum_tau_s")
        cols = []
        for key, title in self.COLUMNS:
            if key == "van_rossum" and tau is not None:
                title = f"van Rossum (τ={tau * 1e3:g} ms)"
            cols.append(title)
        return ["simulator", "status", "precision", *cols]

    def settings_line(self) -> str:
        s = self.settings
        return (f"'{self.graph_name}': {s['steps']} steps x {s['batch']} samples, dt = {s['dt'] * 1e3:g} ms, "
                f"timing = {s['timing']}, discretization = {s['discretization']}, reference = {s['reference']} "
                f"({s['dtype']})")

    def __str__(self) -> str:
        header, rows = self.header(), self.rows()
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
        lines = [f"Comparison of {self.settings_line()}", ""]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        notes = []
        for r in self.results:
            if r.status in ("skipped", "failed"):
                notes.append(f"{r.name}: {r.status}: {r.reason}")
            for d in r.diagnoses:
                if d["observed"]:
                    notes.append(f"{r.name}: {d['text']}")
        if notes:
            lines.append("")
            lines.extend(notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        from .. import __version__

        return {
            "format": "ntgraph-comparison",
            "version": 1,
            "ntgraph_version": __version__,
            "graph": self.graph_name,
            "settings": {k: _json_number(v) for k, v in self.settings.items()},
            "reference": self.settings.get("reference"),
            "labels_given": self.labels_given,
            "min_agreement": _json_number(self.min_agreement()),
            "simulators": [r.to_dict() for r in self.results],
        }

    def write(self, directory: Any, *, min_agreement: Optional[float] = None, plots: bool = True) -> dict:
        """Write ``report.md``, ``report.html``, ``report.json`` and the plots into ``directory`` (atomically).

        Returns ``{"md": path, "html": path, "json": path, "plots": [paths]}``.
        """
        from .writers import write_report

        return write_report(self, directory, min_agreement=min_agreement, plots=plots)
