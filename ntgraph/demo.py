"""The demo network: a balanced E/I spiking network under Dale's law with a readout.

``ntgraph demo`` builds it with :func:`build_demo_graph`, drives it with
Poisson input from :func:`poisson_input`, simulates it on the torch backend,
prints the graph and the firing statistics, and writes a spike raster PNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Graph
from .models import LI, LIF

__all__ = ["DemoConfig", "build_demo_graph", "poisson_input", "firing_summary", "build_classifier", "digits_task"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and constants of the demo network (times in seconds, rates in Hz)."""

    n_input: int = 100
    n_neurons: int = 500
    excitatory_fraction: float = 0.8
    n_readout: int = 10
    p_input: float = 0.2
    p_recurrent: float = 0.2
    input_rate_hz: float = 40.0
    dt: float = 1e-3
    steps: int = 1000
    seed: int = 0


def build_demo_graph(cfg: DemoConfig = DemoConfig()) -> Graph:
    """Input (excitatory Poisson channels) -> recurrent E/I LIF network -> LI readout.

    Constraints on display: Dale's law on the input and the network (80% E),
    sparse random connectivity, no self-connections, balanced E/I recurrent
    initialisation, weight bounds, and heterogeneous membrane time constants.
    """
    g = Graph("balanced-ei-demo", seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    g.input("stim", cfg.n_input, excitatory=1.0)
    tau_mem = rng.uniform(15e-3, 25e-3, cfg.n_neurons)
    g.population("cortex", LIF(tau_mem=tau_mem, v_th=1.0, reset="subtract"), cfg.n_neurons,
                 excitatory=cfg.excitatory_fraction)
    g.dense("stim", "cortex", p=cfg.p_input, scale=1.0, bounds=(0.0, 10.0))
    g.dense("cortex", "cortex", p=cfg.p_recurrent, scale=1.0, no_self=True, balanced=True, bounds=(-5.0, 5.0))
    g.population("readout", LI(tau_mem=20e-3), cfg.n_readout)
    g.dense("cortex", "readout")
    g.output("spikes", "cortex")
    g.output("prediction", "readout")
    return g


def poisson_input(cfg: DemoConfig = DemoConfig(), batch: int = 1) -> np.ndarray:
    """Poisson spike trains ``[steps, batch, n_input]`` at ``input_rate_hz``, modulated by a slow sine."""
    rng = np.random.default_rng(cfg.seed + 1)
    t = np.arange(cfg.steps) * cfg.dt
    rate = cfg.input_rate_hz * (1.0 + 0.5 * np.sin(2 * np.pi * 2.0 * t))
    p = np.clip(rate * cfg.dt, 0.0, 1.0)[:, None, None]
    return (rng.random((cfg.steps, batch, cfg.n_input)) < p).astype(np.float64)


def firing_summary(spikes: np.ndarray, sign: np.ndarray, dt: float) -> dict[str, float]:
    """Mean rates (Hz) of excitatory and inhibitory neurons, active fraction and mean ISI CV.

    ``spikes`` is ``[T, batch, n]``; ``sign`` the Dale signs (+1 E, -1 I).
    """
    duration = spikes.shape[0] * dt
    rates = spikes.sum(axis=0).mean(axis=0) / duration
    cvs = []
    for k in range(spikes.shape[2]):
        times = np.flatnonzero(spikes[:, 0, k])
        if times.size >= 3:
            isi = np.diff(times)
            cvs.append(isi.std() / isi.mean())
    return {
        "rate_exc_hz": float(rates[sign > 0].mean()),
        "rate_inh_hz": float(rates[sign < 0].mean()),
        "active_fraction": float(np.mean(rates > 0)),
        "cv_isi": float(np.mean(cvs)) if cvs else float("nan"),
    }


def build_classifier(n_in: int = 64, n_hidden: int = 64, n_out: int = 10, dt: float = 1e-3, seed: int = 0) -> Graph:
    """A small spiking classifier under Dale's law: inputs -> recurrent LIF (80% E) -> LI readout.

    ``r = tau/dt`` makes a weight the voltage jump of one input spike, so weights stay O(1).
    """
    g = Graph("digits-classifier", seed=seed)
    g.input("pixels", n_in)
    g.population("hidden", LIF(tau_mem=20e-3, r=20e-3 / dt, reset="subtract"), n_hidden, excitatory=0.8)
    g.dense("pixels", "hidden", scale=1.0 / np.sqrt(n_in * 0.2))
    g.dense("hidden", "hidden", scale=0.3 / np.sqrt(n_hidden), no_self=True)
    g.population("readout", LI(tau_mem=20e-3, r=20e-3 / dt), n_out)
    g.dense("hidden", "readout", scale=1.0 / np.sqrt(n_hidden))
    g.output("y", "readout")
    return g


def digits_task(steps: int = 30, dt: float = 1e-3, seed: int = 0):  # -> ntgraph.data.Splits
    """scikit-learn's 8x8 digits, rate-coded (Bernoulli, up to 200 Hz) into ``steps`` steps."""
    from .data import load_digits
    from .encoding import rate_encode

    return load_digits(seed).encode(rate_encode, steps, seed=seed, max_rate_hz=200.0, dt=dt)
