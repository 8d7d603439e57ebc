"""Projections as ONNX subgraphs, with the constraints folded into the weights.

The exported weights are the *effective* ones: the IR weights mapped by
:func:`ntgraph.constraints.project_weights` onto the projection's resolved
constraints (Dale's law, sign masks, bounds, connectivity masks; absent
synapses exactly 0).  The IR weights already satisfy their constraints, so
the map changes nothing there; folding it anyway makes the exported values
exactly the ones the torch backend computes at every forward pass.

Every projection maps ``x [..., n_pre] -> I [..., n_post]``, for one step
(``[batch, n]``) or a whole sequence at once (``[T, batch, n]``):

* ``Dense``: ``MatMul(x, W^T) (+ bias)``; the initializer ``<id>.weight``
  holds ``W^T`` with shape ``(n_pre, n_post)``.
* ``Sparse``: by default lowered to the same dense ``MatMul`` (duplicate
  synapses summed into one matrix entry), the fastest form for the small and
  moderately sparse networks ONNX runtimes serve.  With the export option
  ``sparse="scatter"`` (opset >= 16) it keeps the synapse list instead:
  ``ScatterElements(zeros, post, Gather(x, pre) * w, reduction="add")``, whose
  size grows with the number of synapses, not ``n_post*n_pre``.
* ``OneToOne``: ``Mul(x, w)``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ntgraph.constraints import ResolvedConstraints, project_weights
from ntgraph.ir import Dense, OneToOne, Projection, Sparse

from .builder import GraphBuilder, ModelContext

__all__ = ["ProjectionLowering", "PROJECTION_LOWERINGS"]


class ProjectionLowering:
    """Base class: the effective weights of one projection as initializers, and ``apply(x)``."""

    ir_type: ClassVar[type[Projection]]

    def __init__(self, ctx: ModelContext, node_id: str, prefix: str, payload: Projection,
                 constraints: ResolvedConstraints, *, sparse: str = "dense") -> None:
        self.ctx = ctx
        self.node_id = node_id
        self.prefix = prefix
        self.payload = payload
        self.weight = project_weights(np.asarray(payload.weight, dtype=np.float64), constraints)
        self.sparse = sparse

    def doc(self, what: str) -> str:
        return f"{type(self.payload).__name__} '{self.node_id}': {what}"

    def setup(self) -> None:
        """Create the weight initializers; called once the interface names are taken."""
        raise NotImplementedError

    def apply(self, b: GraphBuilder, x: str) -> str:
        raise NotImplementedError


def _matmul_weight(low: ProjectionLowering, dense: np.ndarray, what: str) -> str:
    return low.ctx.const(f"{low.prefix}.weight", dense.T, low.doc(f"{what}, stored transposed (n_pre, n_post): I = x @ weight"))


class DenseLowering(ProjectionLowering):
    ir_type = Dense

    def setup(self) -> None:
        self.wt = _matmul_weight(self, self.weight, "effective weights (constraints folded in)")
        bias = getattr(self.payload, "bias", None)
        self.bias = None if bias is None else self.ctx.const(f"{self.prefix}.bias", bias, self.doc("bias (n_post,)"))

    def apply(self, b: GraphBuilder, x: str) -> str:
        out = b.matmul(x, self.wt, f"{self.prefix}.matmul" if self.bias is not None else f"{self.prefix}.I")
        return out if self.bias is None else b.add(out, self.bias, f"{self.prefix}.I")


class SparseLowering(ProjectionLowering):
    ir_type = Sparse

    def setup(self) -> None:
        p = self.payload
        post, pre = (np.asarray(i, dtype=np.int64) for i in p.synapse_index())
        if self.sparse == "dense":
            dense = np.zeros((p.n_post, p.n_pre))
            np.add.at(dense, (post, pre), self.weight)
            self.wt = _matmul_weight(self, dense, "effective synapse weights summed into a dense matrix")
            return
        c = self.ctx
        self.w = c.const(f"{self.prefix}.weight", self.weight, self.doc("effective weight of each synapse (n_synapses,)"))
        self.pre = c.ints(f"{self.prefix}.pre_index", pre, self.doc("presynaptic neuron of each synapse"))
        self.post = c.ints(f"{self.prefix}.post_index", post, self.doc("postsynaptic neuron of each synapse"))
        self.n_post = c.ints(f"{self.prefix}.n_post", [p.n_post])

    def apply(self, b: GraphBuilder, x: str) -> str:
        t = f"{self.prefix}."
        if self.sparse == "dense":
            return b.matmul(x, self.wt, f"{t}I")
        gathered = b.gather(x, self.pre, -1, f"{t}pre")
        updates = b.mul(gathered, self.w, f"{t}synaptic")
        lead = b.slice(b.op("Shape", [x], f"{t}x_shape"), 0, -1, 0, f"{t}lead_shape")
        zeros = b.zeros([lead, self.n_post], f"{t}zeros")
        index = b.op("Expand", [self.post, b.op("Shape", [updates], f"{t}synaptic_shape")], f"{t}post")
        return b.op("ScatterElements", [zeros, index, updates], f"{t}I", axis=-1, reduction="add")


class OneToOneLowering(ProjectionLowering):
    ir_type = OneToOne

    def setup(self) -> None:
        self.w = self.ctx.const(f"{self.prefix}.weight", self.weight, self.doc("effective weight of each neuron (n,)"))

    def apply(self, b: GraphBuilder, x: str) -> str:
        return b.mul(x, self.w, f"{self.prefix}.I")


PROJECTION_LOWERINGS: tuple[type[ProjectionLowering], ...] = (DenseLowering, SparseLowering, OneToOneLowering)
