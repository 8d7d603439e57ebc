"""Surrogate gradients for the spike nonlinearity.

The forward pass is the Heaviside step ``z = (x > 0)`` with ``x = v - threshold``
(strict, as in the semantics).  The backward pass replaces the Dirac delta by a
smooth pseudo-derivative ``dz/dx ~ psi(x)``.  Each surrogate is an object, so a
new one is a subclass with a :meth:`Surrogate.derivative`, never a string switch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["Surrogate", "FastSigmoid", "SuperSpike", "ArcTan", "Triangle", "heaviside"]


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: "Surrogate") -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x > 0`` else ``0.0``, without a gradient."""
    return (x > 0).to(x.dtype)


@functools.lru_cache(maxsize=64)
def _constants(dtype: torch.dtype, device: torch.device, values: tuple[float, ...]) -> tuple[torch.Tensor, ...]:
    """0-dim tensors of ``values`` (never written to): a Python scalar in an op is converted on every call."""
    return tuple(torch.full((), v, dtype=dtype, device=device) for v in values)


@dataclass(frozen=True)
class Surrogate:
    """Heaviside forward, ``derivative(x)`` backward."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpikeFunction.apply(x, self)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grad_input(self, x: torch.Tensor, grad: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``grad * psi(x)`` (the gradient reaching ``x``), into ``out`` if given; subclasses may fuse it."""
        return torch.mul(grad, self.derivative(x), out=out)

    def kernel_code(self) -> Optional[tuple[int, float, float]]:
        """``(kind, p0, p1)`` for the compiled scan kernels (:mod:`.kernels`), or None: they cannot compute it.

        Only the exact built-in classes return a code, so a subclass that changes :meth:`derivative` is never
        replaced by the built-in formula.
        """
        return None


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast sigmoid / SuperSpike (Zenke & Ganguli 2018): ``psi(x) = 1 / (slope*|x| + 1)^2``."""

    slope: float = 25.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:  # differentiable (double backward)
            return 1.0 / (self.slope * x.abs() + 1.0) ** 2
        d = x.abs()  # the same operations in place: one [T, B, n] buffer instead of five
        return d.mul_(self.slope).add_(1.0).pow_(2).reciprocal_()

    def grad_input(self, x: torch.Tensor, grad: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``grad / (slope*|x| + 1)^2`` in one buffer (``out`` if given; equal to ``grad*psi`` up to rounding)."""
        if torch.is_grad_enabled() and (x.requires_grad or grad.requires_grad):
            return torch.mul(grad, self.derivative(x), out=out)
        d = torch.abs(x, out=out) if out is not None else x.abs()
        one, slope = _constants(x.dtype, x.device, (1.0, self.slope))
        torch.addcmul(one, d, slope, out=d).square_()  # (1 + slope*|x|)^2 with no Python-scalar conversions
        return torch.div(grad, d, out=d)

    def kernel_code(self) -> Optional[tuple[int, float, float]]:
        return (1, float(self.slope), 0.0) if type(self) is FastSigmoid else None


SuperSpike = FastSigmoid


@dataclass(frozen=True)
class ArcTan(Surrogate):
    """Arctan (Fang et al. 2021): ``psi(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2)``."""

    alpha: float = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * x) ** 2)

    def kernel_code(self) -> Optional[tuple[int, float, float]]:
        return (2, float(self.alpha), 0.0) if type(self) is ArcTan else None


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Bellec et al.'s triangular pseudo-derivative: ``psi(x) = gamma * max(0, 1 - |x|/width)``."""

    gamma: float = 0.3
    width: float = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.clamp(1.0 - x.abs() / self.width, min=0.0)

    def kernel_code(self) -> Optional[tuple[int, float, float]]:
        return (3, float(self.gamma), float(self.width)) if type(self) is Triangle else None
