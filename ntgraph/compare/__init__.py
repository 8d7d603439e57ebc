"""Compare one network across simulators: ``compare(graph, inputs, simulators=[...], dt=...)``.

The same prepared graph runs on every simulator named (see
:data:`~ntgraph.compare.simulators.SIMULATORS`: ``torch`` -- the reference --,
``onnx``, ``lava-float``, ``lava-fixed``, ``snntorch``, ``norse``, ``brian2``);
each is compared with the reference by the metrics of
:mod:`ntgraph.compare.metrics`, and the divergences it can explain are
explained by the rules of :mod:`ntgraph.compare.diagnose`.  The returned
:class:`ComparisonReport` prints as a table and writes ``report.md``,
``report.html`` (self-contained) and ``report.json`` with
:meth:`ComparisonReport.write`.  ``ntgraph compare`` is the command line.

The core stays free of heavy imports: simulators are reached through the
backend registry, and matplotlib is imported only to draw the figures.
See ``docs/compare.md``.
"""

from __future__ import annotations

from .core import DTYPES, compare, load_graph
from .diagnose import RULES, Rule, diagnose
from .metrics import (Divergence, accuracy, first_divergence, max_abs_error, readout_prediction, spike_agreement,
                      spike_count_correlation, van_rossum_distance)
from .report import ComparisonReport, SimulatorResult
from .simulators import DEFAULT_SIMULATORS, SIMULATORS, SimulatorSpec, nir_name, register_simulator

__all__ = [
    "compare",
    "load_graph",
    "ComparisonReport",
    "SimulatorResult",
    "SIMULATORS",
    "DEFAULT_SIMULATORS",
    "SimulatorSpec",
    "register_simulator",
    "RULES",
    "Rule",
    "diagnose",
    "Divergence",
    "spike_agreement",
    "spike_count_correlation",
    "van_rossum_distance",
    "first_divergence",
    "max_abs_error",
    "readout_prediction",
    "accuracy",
    "nir_name",
    "DTYPES",
]
