r"""A CubaLIF population with its own dense self-projection as one compiled scan (:class:`CubaScan`).

Without a self-projection a CubaLIF population runs as a linear scan (the synaptic current) followed by
the LIF scan (``layered._run_cuba``).  With one, the recurrent spikes enter the *current*, so the two
recurrences are coupled and, on the PyTorch side, run as the step loop; this scan runs them in one
compiled call each way (:func:`.kernels.cuba_forward`, :func:`.kernels.cuba_backward_detached`), as
:meth:`CubaLIFDynamics.step` with ``g_syn = (1-b) w_in``, ``gain = (1-a) r`` and ``I_t = D_t + W z_{t-d} + b``::

    i_t = b i_{t-1} + g_syn I_t;   v1_t = a v_{t-1} + (1-a)(v_leak + r i_t);   z_t = H(v1_t - v_th)
    v_t = v_reset if z_t else v1_t (zero reset) | v1_t - z_t v_th (subtract)

backward, detached reset (no gradient through ``z`` in the reset), ``psi`` the surrogate derivative at
``x_t = v1_t - v_th``::

    gv_t = dL/dv_t + a G_{t+1};   gz_t = dL/dz_t + (dL/dI_{t+d}) W;   G_t = gz_t psi_t + gv_t (1 - z_t | 1)
    H_t = dL/di_t + G_t gain + b H_{t+1};   dL/dI_t = H_t g_syn

``dL/dv_{-1} = a G_0``, ``dL/di_{-1} = b H_0``, ``dL/dW = sum_t (dL/dI_{t+d})^T z_t`` (from the forward's
spike lists), ``dL/db = sum dL/dI``.  The recurrent product is summed from the rows of ``(diag(g_syn) W)^T``
of the neurons that spiked.

It applies (:func:`cuba_scan` returns None otherwise, and the population runs the step loop) on CPU
tensors of float32/float64 with the compiled kernels enabled, a detached reset, a built-in surrogate and
no neuron parameter that needs a gradient (learnable time constants keep the step loop).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from . import kernels
from .events import RowEvents, attach_events
from .scan import _kernel_vectors, self_projection_grads

__all__ = ["CubaScan", "cuba_scan"]


class CubaScan(torch.autograd.Function):
    """``(drive, i0, v0, hist, W, b) -> (z [T,B,n], i [T,B,n], v)``; see the module docstring.

    ``vectors``: the ``[n]`` arrays ``syn_decay`` (b), ``syn_gain``, ``a``, ``gain``, ``const`` = (1-a)(v_leak -
    v_th), ``reset`` (v_reset - v_th for a zero reset, else v_th) and ``v_th``.  ``v`` is ``[T, B, n]`` with
    ``keep_v``, else the last step ``[1, B, n]``.
    """

    @staticmethod
    def forward(ctx: Any, drive: Tensor, i0: Tensor, v0: Tensor, hist: Tensor, weight: Tensor,
                bias: Optional[Tensor], vectors: dict[str, np.ndarray], delay: int, zero_reset: bool,
                code: tuple[int, float, float], keep_v: bool) -> tuple[Tensor, Tensor, Tensor]:
        steps, batch, n = drive.shape
        syn_gain = torch.from_numpy(vectors["syn_gain"])
        current = drive if bias is None else drive + bias
        w = weight.detach()
        table = torch.mul(w.t(), syn_gain, out=torch.empty(w.shape[1], n, dtype=w.dtype))  # (diag(g_syn) W)^T
        x_all, z_all, i_all, v_all, v_last, (ptr, cols) = kernels.cuba_forward(
            current.detach() * syn_gain, i0.detach(), v0, vectors["syn_decay"], vectors["a"], vectors["gain"],
            vectors["const"], vectors["reset"], vectors["v_th"], zero_reset, hist.detach(), table, delay, keep_v)
        spikes = RowEvents(ptr, cols, None, n)
        attach_events(z_all, spikes)
        ctx.set_materialize_grads(False)
        ctx.vectors, ctx.delay, ctx.zero_reset, ctx.code = vectors, delay, zero_reset, code
        ctx.spikes = spikes if ctx.needs_input_grad[4] else None
        ctx.shapes = (i0.shape, v0.shape)
        ctx.save_for_backward(x_all, z_all, hist, weight)
        return z_all, i_all, (v_all if keep_v else v_last)

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_i: Optional[Tensor],  # type: ignore[override]
                 grad_v: Optional[Tensor]):
        x_all, z_all, hist, weight = ctx.saved_tensors
        vec = ctx.vectors
        needs = ctx.needs_input_grad
        gi_all, g_first, h_first = kernels.cuba_backward_detached(
            x_all, grad_z, grad_v, grad_i, vec["syn_decay"], vec["syn_gain"], vec["a"], vec["gain"], ctx.code,
            ctx.zero_reset, weight, ctx.delay)
        i0_shape, v0_shape = ctx.shapes
        grad_i0 = (h_first * torch.from_numpy(vec["syn_decay"])).sum_to_size(i0_shape) if needs[1] else None
        grad_v0 = (g_first * torch.from_numpy(vec["a"])).sum_to_size(v0_shape) if needs[2] else None
        grad_hist, grad_w = self_projection_grads(gi_all, z_all, hist, weight, ctx.delay, needs[3], needs[4],
                                                  None, ctx.spikes)
        grad_b = gi_all.reshape(-1, gi_all.shape[-1]).sum(0) if needs[5] else None
        return (gi_all if needs[0] else None, grad_i0, grad_v0, grad_hist, grad_w, grad_b,
                None, None, None, None, None)


def cuba_scan(drive: Tensor, i0: Tensor, v0: Tensor, c: Any, *, zero_reset: bool, detach: bool, surrogate: Any,
              hist: Tensor, weight: Tensor, bias: Optional[Tensor], delay: int,
              keep_v: bool) -> Optional[tuple[Tensor, Tensor, Tensor]]:
    """Run :class:`CubaScan`: ``(z, i, v)`` of a CubaLIF population with its dense self-projection ``weight``
    ``[n, n]`` (``bias`` ``[n]`` or None, ``delay >= 1``, ``hist`` ``[delay, B, n]``: its spikes before step 0),
    or None where the compiled scan does not apply (see the module docstring; the caller runs the step loop).

    ``c``: the population's :class:`~.neurons.CubaLIFCoeffs`.  ``v`` is ``[T, B, n]`` with ``keep_v``, else the
    last step ``[1, B, n]``.
    """
    steps, batch, n = drive.shape
    code = kernels.surrogate_code(surrogate)
    if not detach or code is None or any(isinstance(t, Tensor) and t.requires_grad for t in c):
        return None
    vectors = _kernel_vectors(batch, n, True, drive, i0, v0, hist, weight, bias,
                              syn_decay=c.b, syn_gain=(1.0 - c.b) * c.w_in, a=c.a, gain=(1.0 - c.a) * c.r,
                              const=(1.0 - c.a) * (c.v_leak - c.v_th),
                              reset=(c.v_reset - c.v_th) if zero_reset else c.v_th, v_th=c.v_th)
    if vectors is None:
        return None
    return CubaScan.apply(drive, i0, v0, hist, weight, bias, vectors, delay, zero_reset, code, keep_v)
