"""A fused LIF step with a hand-written backward pass (the hot path of BPTT).

Autograd would record about eight nodes per LIF step (leak, drive, threshold,
surrogate spike, reset) and keep their intermediates.  :class:`FusedLIFStep`
records one node and keeps two tensors, ``v - v_th`` and the spikes, and its
backward pass is the exact derivative of the same forward arithmetic (same
operation order, so the forward values are bit-identical to the unfused step):

    v1 = a*v + (1-a)*(v_leak + r*I);  x = v1 - v_th;  z = H(x)
    zero reset:      v2 = v1*(1 - z) + v_reset*z      (z detached)
    subtract reset:  v2 = v1 - z*v_th                 (z*v_th detached)

    dL/dv1 = dL/dv2 * (1 - z  |  1) + dL/dz * psi(x)
    dL/dv  = dL/dv1 * a,   dL/dI = dL/dv1 * (1-a)*r

It is used only where it is exact: a detached reset and no learnable LIF
parameters (otherwise the plain step runs, with autograd).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["FusedLIFStep"]


class FusedLIFStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, current: Tensor, v: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor,
                v_reset: Tensor, zero_reset: bool, surrogate: Any) -> tuple[Tensor, Tensor]:
        v1 = a * v + (1.0 - a) * (v_leak + r * current)
        x = v1 - v_th
        z = (x > 0).to(x.dtype)
        v2 = v1 * (1.0 - z) + v_reset * z if zero_reset else v1 - z * v_th
        ctx.save_for_backward(x, z, a, r)
        ctx.zero_reset = zero_reset
        ctx.surrogate = surrogate
        return z, v2

    @staticmethod
    def backward(ctx: Any, grad_z: Tensor, grad_v2: Tensor):  # type: ignore[override]
        x, z, a, r = ctx.saved_tensors
        grad_v1 = grad_v2 * (1.0 - z) if ctx.zero_reset else grad_v2
        if grad_z is not None:
            grad_v1 = grad_v1 + grad_z * ctx.surrogate.derivative(x)
        grad_v = grad_v1 * a if ctx.needs_input_grad[1] else None
        grad_current = grad_v1 * ((1.0 - a) * r) if ctx.needs_input_grad[0] else None
        return grad_current, grad_v, None, None, None, None, None, None, None
