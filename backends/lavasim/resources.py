"""Loihi 2 resource estimate: neurons, synapses and neuro-cores of a network (numpy only).

Each population is placed on neuro-cores of its own (as Lava's Loihi
compiler allocates cores per process), together with the synapses of every
projection into it (synaptic memory sits on the core of the postsynaptic
neuron).  A population needs ``max(ceil(neurons / neurons_per_core),
ceil(stored weights / synapses_per_core))`` cores.  A Dense projection stores
every entry of its matrix (as Lava's ``Dense``), a Sparse or OneToOne one its
synapses.  Inputs are fed by the host and take no neuro-core.

The limits (:data:`LOIHI2_LIMITS`) are Intel's published chip-level figures
divided over the chip's 128 neuro-cores; see ``docs/lava.md`` for the sources.
Real placements need more cores when weights use more bits, when synapses
share cores poorly, or for routing; this is a lower-bound estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ntgraph.graph import Graph
from ntgraph.ir import Dense, Population, Projection
from ntgraph.passes.quantize import synapse_coordinates

__all__ = ["Loihi2Limits", "LOIHI2_LIMITS", "PopulationResources", "ResourceReport", "loihi2_resources"]

_BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', Technology Brief (2021): "
          "128 neuro-cores, up to 1 million neurons and 120 million synapses per chip")


@dataclass(frozen=True)
class Loihi2Limits:
    """Per-core and per-chip capacities of Loihi 2 and the source of the figures.

    ``neurons_per_core`` = 8192 is 1,048,576 neurons / 128 cores (the brief's
    "up to 1 million neurons" and "8,192 neurons per core");
    ``synapses_per_core`` = 937,500 is 120 million synapses / 128 cores, an
    average (the real figure depends on the weights' bit width and sparsity).
    """

    neurons_per_core: int = 8192
    synapses_per_core: int = 120_000_000 // 128
    cores_per_chip: int = 128
    source: str = _BRIEF


LOIHI2_LIMITS = Loihi2Limits()


@dataclass(frozen=True)
class PopulationResources:
    """One population's neurons, incoming synapses, stored weights and estimated cores."""

    node_id: str
    neurons: int
    synapses: int
    stored_weights: int
    cores: int
    limited_by: str


@dataclass
class ResourceReport:
    """Neurons, synapses and neuro-cores of a network on Loihi 2; ``str()`` prints a table."""

    populations: dict = field(default_factory=dict)
    limits: Loihi2Limits = LOIHI2_LIMITS

    @property
    def neurons(self) -> int:
        return sum(p.neurons for p in self.populations.values())

    @property
    def synapses(self) -> int:
        return sum(p.synapses for p in self.populations.values())

    @property
    def stored_weights(self) -> int:
        return sum(p.stored_weights for p in self.populations.values())

    @property
    def cores(self) -> int:
        return sum(p.cores for p in self.populations.values())

    @property
    def chips(self) -> int:
        return max(1, math.ceil(self.cores / self.limits.cores_per_chip)) if self.populations else 0

    def to_dict(self) -> dict:
        return {
            "neurons": self.neurons, "synapses": self.synapses, "stored_weights": self.stored_weights,
            "neuro_cores": self.cores, "chips": self.chips,
            "limits": {"neurons_per_core": self.limits.neurons_per_core,
                       "synapses_per_core": self.limits.synapses_per_core,
                       "cores_per_chip": self.limits.cores_per_chip, "source": self.limits.source},
            "populations": {k: {"neurons": p.neurons, "synapses": p.synapses, "stored_weights": p.stored_weights,
                                "cores": p.cores, "limited_by": p.limited_by} for k, p in self.populations.items()},
        }

    def __str__(self) -> str:
        rows = [("population", "neurons", "synapses", "stored", "cores", "limited by")]
        rows += [(k, str(p.neurons), str(p.synapses), str(p.stored_weights), str(p.cores), p.limited_by)
                 for k, p in self.populations.items()]
        rows.append(("total", str(self.neurons), str(self.synapses), str(self.stored_weights), str(self.cores),
                     f"{self.chips} chip(s)"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["Loihi 2 resources (limits per neuro-core: "
                 f"{self.limits.neurons_per_core} neurons, {self.limits.synapses_per_core} synapses; "
                 f"{self.limits.cores_per_chip} cores per chip)"]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        return "\n".join(lines)


def loihi2_resources(graph: Graph, limits: Loihi2Limits = LOIHI2_LIMITS) -> ResourceReport:
    """Estimate the neuro-cores ``graph`` needs on Loihi 2 (see the module docstring for the model)."""
    report = ResourceReport(limits=limits)
    for pop in graph.populations:
        payload: Population = graph[pop]
        synapses = stored = 0
        for proj in graph.incoming(pop):
            p: Projection = graph[proj]
            n_syn = int(synapse_coordinates(p)[2].size)
            synapses += n_syn
            stored += p.n_post * p.n_pre if isinstance(p, Dense) else n_syn
        by_neurons = math.ceil(payload.size / limits.neurons_per_core)
        by_synapses = math.ceil(stored / limits.synapses_per_core)
        cores = max(1, by_neurons, by_synapses)
        limited = "synapses" if by_synapses > by_neurons else "neurons"
        report.populations[pop] = PopulationResources(pop, int(payload.size), synapses, stored, int(cores), limited)
    return report

