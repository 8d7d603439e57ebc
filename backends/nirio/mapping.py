"""The correspondence between ntgraph's neuron models and NIR's neuron nodes.

One table, used in both directions: :data:`PARAM_FIELDS` maps each ntgraph
model parameter to the NIR field holding it (``None``: NIR has no field, the
value travels in ntgraph's metadata), so the exporter and the importer of
ntgraph's own files cannot drift apart.

==========  =========  ===========================================================
ntgraph     NIR node   note
==========  =========  ===========================================================
LIF         LIF        identical ODE; ``reset="subtract"`` has no NIR field
CubaLIF     CubaLIF    identical ODEs (current updated first); same reset note
ALIF        LIF        NIR has no adaptive threshold: ``tau_adapt``, ``beta`` in metadata
IF          IF         identical (``dv/dt = r*I``)
LI          LI         identical
==========  =========  ===========================================================

WilsonCowan and RateUnit have no NIR node (NIR 1.0 has no rate neuron or
sigmoid); exporting them raises :class:`~ntgraph.errors.UnsupportedNodeError`.
"""

from __future__ import annotations

from typing import Optional

from ntgraph.models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan

__all__ = ["NIR_NODE", "PARAM_FIELDS", "UNSUPPORTED", "lossy_fields"]

_LIF = {"tau_mem": "tau", "r": "r", "v_leak": "v_leak", "v_th": "v_threshold", "v_reset": "v_reset"}

#: ntgraph model class -> name of the NIR node class it exports as.
NIR_NODE: dict[type, str] = {LIF: "LIF", CubaLIF: "CubaLIF", ALIF: "LIF", IF: "IF", LI: "LI"}

#: ntgraph model class -> {ntgraph parameter: NIR field or None (metadata only)}.
PARAM_FIELDS: dict[type, dict[str, Optional[str]]] = {
    LIF: dict(_LIF),
    CubaLIF: {
        "tau_syn": "tau_syn", "tau_mem": "tau_mem", "r": "r", "v_leak": "v_leak",
        "v_th": "v_threshold", "v_reset": "v_reset", "w_in": "w_in",
    },
    ALIF: {**_LIF, "tau_adapt": None, "beta": None},
    IF: {"r": "r", "v_th": "v_threshold", "v_reset": "v_reset"},
    LI: {"tau_mem": "tau", "r": "r", "v_leak": "v_leak"},
}

#: Models NIR cannot express, with the reason given in the error.
UNSUPPORTED: dict[type, str] = {
    WilsonCowan: "a firing-rate model with a sigmoid activation; NIR 1.0 has no rate neuron and no sigmoid node",
    RateUnit: "a sigmoid/tanh rate unit; NIR 1.0 has no rate neuron and no sigmoid or tanh node",
}


def lossy_fields(model: NeuronModel) -> list[str]:
    """What a peer reading only the NIR fields would not see of ``model`` (empty when exact)."""
    notes = []
    if isinstance(model, ALIF):
        notes.append("its threshold adaptation (tau_adapt, beta): peers see a plain LIF")
    if getattr(model, "reset", "zero") == "subtract":
        notes.append("reset='subtract': NIR's LIF/IF/CubaLIF reset to v_reset")
    return notes
