"""NIR's stateless linear nodes as operators on flattened vectors.

Between two neuron nodes a NIR graph may hold any chain (or tree) of linear
nodes: ``Affine``, ``Linear``, ``Scale``, ``Conv1d``, ``Conv2d``,
``SumPool2d``, ``AvgPool2d``, ``Flatten``, ``Identity`` and the Input/Output
nodes of a nested graph.  ntgraph's IR is one-dimensional (a population has a
``size``), so each such node becomes an :class:`Op`: a linear map ``y = A x (+ c)``
on vectors flattened in C order (the order of ``numpy.reshape`` and
``torch.flatten``).  The importer composes the maps along every path from a
source to a target population, so ``Affine -> Affine`` chains, convolutions
and pooling all become exact weight matrices.

:meth:`Op.apply` maps a matrix whose columns are input vectors (the
contribution of each source neuron so far) to the matrix of output vectors,
without ever building ``A`` for convolutions; :meth:`Op.offset` is the
constant ``c`` (a bias) the node adds, already flattened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import nir
import numpy as np

from ntgraph.errors import UnsupportedNodeError, ValidationError

__all__ = ["Op", "make_op", "LINEAR_TYPES", "shape_of"]

#: NIR node classes that are stateless linear maps.
LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d,
                nir.Flatten, nir.ir.graph.Identity, nir.Input, nir.Output)


@dataclass
class Op:
    """A linear node: ``in_shape -> out_shape`` with ``y = A x + offset``."""

    key: str
    kind: str
    in_shape: tuple
    out_shape: tuple
    fn: Any  # (n_in, k) -> (n_out, k)
    bias: Optional[np.ndarray] = None
    identity: bool = False
    diagonal: Optional[np.ndarray] = None  # the scale vector of a Scale node
    params: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    def apply(self, m: np.ndarray) -> np.ndarray:
        """``A @ m`` for a matrix ``m`` of shape ``(n_in, k)``."""
        return m if self.identity else self.fn(m)

    def offset(self) -> Optional[np.ndarray]:
        """The constant the node adds, flattened ``(n_out,)``, or None."""
        return self.bias


def _tuple(value: Any, n: int, name: str, where: str) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValidationError(f"{where}.{name}: expected {n} values, got {arr.tolist()}")
    return tuple(int(v) for v in arr)


def _padding(value: Any, n: int, kernel: tuple, dilation: tuple, where: str) -> tuple[tuple[int, int], ...]:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size == 1:
        value = value.item().decode() if isinstance(value.item(), bytes) else value.item()
    if isinstance(value, str):
        if value == "valid":
            return tuple((0, 0) for _ in range(n))
        if value == "same":
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ValidationError(f"{where}.padding: expected 'same', 'valid' or integers, got {value!r}")
    p = _tuple(value, n, "padding", where)
    return tuple((v, v) for v in p)


def _conv(x: np.ndarray, weight: np.ndarray, stride: tuple, pads: tuple, dilation: tuple, groups: int) -> np.ndarray:
    """N-d cross-correlation as in torch: ``x`` (B, C_in, *S), ``weight`` (C_out, C_in/groups, *K)."""
    nd = weight.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    kernel = weight.shape[2:]
    spatial = x.shape[2:]
    out = [(spatial[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    b, c_in = x.shape[:2]
    c_out = weight.shape[0]
    cg_in, cg_out = c_in // groups, c_out // groups
    result = np.zeros((b, c_out, *out))
    for kidx in np.ndindex(*kernel):
        sl = tuple(
            slice(kidx[i] * dilation[i], kidx[i] * dilation[i] + stride[i] * (out[i] - 1) + 1, stride[i])
            for i in range(nd)
        )
        patch = x[(slice(None), slice(None), *sl)]  # (B, C_in, *out)
        for g in range(groups):
            w = weight[g * cg_out:(g + 1) * cg_out, :, *kidx]  # (cg_out, cg_in)
            result[:, g * cg_out:(g + 1) * cg_out] += np.einsum(
                "oc,bc...->bo...", w, patch[:, g * cg_in:(g + 1) * cg_in]
            )
    return result


def _conv_shape(in_shape: tuple, weight: np.ndarray, stride: tuple, pads: tuple, dilation: tuple) -> tuple:
    nd = weight.ndim - 2
    spatial = in_shape[1:]
    out = [
        (spatial[i] + pads[i][0] + pads[i][1] - dilation[i] * (weight.shape[2 + i] - 1) - 1) // stride[i] + 1
        for i in range(nd)
    ]
    return (weight.shape[0], *out)


def shape_of(node: nir.NIRNode) -> Optional[tuple]:
    """The output shape a neuron or linear node defines by itself, or None when it needs its input."""
    out = getattr(node, "output_type", None)
    if isinstance(out, dict) and out:
        value = next(iter(out.values()))
        if value is not None:
            return tuple(int(v) for v in np.atleast_1d(np.asarray(value)).ravel())
    return None


def make_op(key: str, node: nir.NIRNode, in_shape: tuple) -> Op:
    """The :class:`Op` of a linear NIR node fed with vectors of shape ``in_shape``."""
    kind = type(node).__name__
    n_in = int(np.prod(in_shape))
    where = f"NIR node '{key}' ({kind})"
    if isinstance(node, (nir.Input, nir.Output, nir.ir.graph.Identity)):
        return Op(key, kind, in_shape, in_shape, None, identity=True)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        shape = list(in_shape)
        nd = len(shape)
        s = start + nd if start < 0 else start
        e = end + nd if end < 0 else end
        if not (0 <= s <= e < nd):
            # Producers that count a batch dimension (snnTorch's start_dim-1) may point past the shape.
            return Op(key, kind, in_shape, (n_in,), None, identity=True)
        out = (*shape[:s], int(np.prod(shape[s:e + 1])), *shape[e + 1:])
        return Op(key, kind, in_shape, tuple(out), None, identity=True)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2:
            raise UnsupportedNodeError(f"{where}: weight of shape {w.shape}; only 2-D (n_out, n_in) weights are supported")
        if w.shape[1] != n_in:
            raise ValidationError(f"{where}.weight: expected {n_in} input columns for an input of shape {in_shape}, got {w.shape}")
        bias = None
        if isinstance(node, nir.Affine) and node.bias is not None:
            bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64), (w.shape[0],)).copy()
        return Op(key, kind, in_shape, (w.shape[0],), lambda m, w=w: w @ m, bias=bias, params={"weight": w})
    if isinstance(node, nir.Scale):
        s = np.asarray(node.scale, dtype=np.float64)
        if s.size == 1:
            s = np.full(in_shape, float(s.ravel()[0]))
        if int(np.prod(s.shape)) != n_in:
            raise ValidationError(f"{where}.scale: expected {n_in} values for an input of shape {in_shape}, got shape {s.shape}")
        flat = s.ravel()
        return Op(key, kind, in_shape, in_shape, lambda m, f=flat: f[:, None] * m, diagonal=flat)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight, dtype=np.float64)
        nd = w.ndim - 2
        if len(in_shape) != nd + 1:
            raise ValidationError(f"{where}: expected an input of shape (channels, {nd} spatial dims), got {in_shape}")
        stride = _tuple(node.stride, nd, "stride", where)
        dilation = _tuple(node.dilation, nd, "dilation", where)
        groups = int(np.asarray(node.groups).ravel()[0])
        pads = _padding(node.padding, nd, w.shape[2:], dilation, where)
        out_shape = _conv_shape(in_shape, w, stride, pads, dilation)

        def conv(m: np.ndarray) -> np.ndarray:
            x = m.T.reshape(m.shape[1], *in_shape)
            return _conv(x, w, stride, pads, dilation, groups).reshape(m.shape[1], -1).T

        bias = None
        if node.bias is not None and np.any(np.asarray(node.bias) != 0):
            b = np.asarray(node.bias, dtype=np.float64).reshape(-1, *([1] * nd))
            bias = np.broadcast_to(b, out_shape).ravel().copy()
        return Op(key, kind, in_shape, out_shape, conv, bias=bias)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(in_shape) != 3:
            raise ValidationError(f"{where}: expected an input of shape (channels, height, width), got {in_shape}")
        kernel = _tuple(node.kernel_size, 2, "kernel_size", where)
        stride = _tuple(node.stride, 2, "stride", where)
        pads = _padding(node.padding, 2, kernel, (1, 1), where)
        channels = in_shape[0]
        w = np.zeros((channels, 1, *kernel))
        w[:] = 1.0 / (kernel[0] * kernel[1]) if isinstance(node, nir.AvgPool2d) else 1.0
        out_shape = _conv_shape(in_shape, w, stride, pads, (1, 1))

        def pool(m: np.ndarray) -> np.ndarray:
            x = m.T.reshape(m.shape[1], *in_shape)
            return _conv(x, w, stride, pads, (1, 1), channels).reshape(m.shape[1], -1).T

        return Op(key, kind, in_shape, out_shape, pool)
    raise UnsupportedNodeError(f"{where}: not a linear node")

