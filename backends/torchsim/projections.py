"""Projections of the torch backend: constrained weights and how they act.

A projection keeps a free parameter ``weight`` (initialised to the IR weights)
and maps it onto its constraints at every forward pass::

    W = where(mask, clip(where(sign != 0, sign*|weight|, weight), low, high), 0)

so whatever an optimiser does to ``weight``, the effective weights obey Dale's
law, fixed signs, bounds and connectivity (absent synapses stay exactly 0).
This is the same map as :func:`ntgraph.constraints.project_weights`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ntgraph.constraints import ResolvedConstraints, project_weights
from ntgraph.ir import Dense, Projection, Sparse

__all__ = ["ProjectionModule", "DenseProjection", "SparseProjection", "OneToOneProjection"]


def _tensor(arr: np.ndarray) -> Tensor:
    return torch.tensor(np.array(arr), dtype=torch.float64)  # cast once by module.to(dtype)


class ProjectionModule(nn.Module):
    """Base: a constrained weight array and ``apply(x, W)``, ``x [..., n_pre] -> [..., n_post]``."""

    def __init__(self, node_id: str, payload: Projection, constraints: ResolvedConstraints) -> None:
        super().__init__()
        self.node_id = node_id
        self.payload = payload
        self.constraints = constraints
        self.n_pre, self.n_post = payload.n_pre, payload.n_post
        self.learnable = tuple(payload.learnable)
        self._register("weight", payload.weight)
        self.has_sign = bool(np.any(constraints.sign))
        self.has_mask = not bool(np.all(constraints.mask))
        self.has_bounds = bool(np.any(np.isfinite(constraints.low)) or np.any(np.isfinite(constraints.high)))
        if self.has_sign:
            self.register_buffer("sign", _tensor(constraints.sign))
        if self.has_mask:
            self.register_buffer("mask", torch.tensor(np.array(constraints.mask), dtype=torch.bool))
        if self.has_bounds:
            self.register_buffer("low", _tensor(constraints.low))
            self.register_buffer("high", _tensor(constraints.high))

    def _register(self, name: str, value: np.ndarray) -> None:
        t = _tensor(value)
        if name in self.learnable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    def effective_weight(self) -> Tensor:
        """The weights after the constraint map (see the module docstring)."""
        w = self.weight
        if self.has_sign:
            w = torch.where(self.sign != 0, self.sign * w.abs(), w)
        if self.has_bounds:
            w = torch.clamp(w, self.low, self.high)
        if self.has_mask:
            w = torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        return w

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def to_payload(self) -> Projection:
        """The IR payload with the current effective weights (float64, constraints re-applied exactly)."""
        w = self.effective_weight().detach().cpu().double().numpy()
        return self.payload.replace(weight=project_weights(w, self.constraints))


class DenseProjection(ProjectionModule):
    """``I = x @ W.T + bias``."""

    def __init__(self, node_id: str, payload: Dense, constraints: ResolvedConstraints) -> None:
        super().__init__(node_id, payload, constraints)
        self.has_bias = payload.bias is not None
        if self.has_bias:
            self._register("bias", payload.bias)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return F.linear(x, w, self.bias if self.has_bias else None)

    def to_payload(self) -> Projection:
        payload = super().to_payload()
        if self.has_bias:
            payload = payload.replace(bias=self.bias.detach().cpu().double().numpy())
        return payload


class SparseProjection(ProjectionModule):
    """``I[..., post[k]] += W[k] * x[..., pre[k]]`` over the synapse list."""

    def __init__(self, node_id: str, payload: Sparse, constraints: ResolvedConstraints) -> None:
        super().__init__(node_id, payload, constraints)
        self.register_buffer("post_index", torch.tensor(np.array(payload.post_index), dtype=torch.long))
        self.register_buffer("pre_index", torch.tensor(np.array(payload.pre_index), dtype=torch.long))

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        out = x.new_zeros(*x.shape[:-1], self.n_post)
        return out.index_add(-1, self.post_index, x.index_select(-1, self.pre_index) * w)


class OneToOneProjection(ProjectionModule):
    """``I = W * x`` elementwise."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return x * w
