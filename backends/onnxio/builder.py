"""A small emitter of ONNX graphs on top of :mod:`onnx.helper`.

:class:`ModelContext` owns what one model shares: the float type, the opset,
the name scope and the initializers (weights and per-neuron constants, stored
once in the main graph; a Scan body reads them from the outer scope).
:class:`GraphBuilder` appends nodes to one graph (the main graph, or a Scan
body) through one method per operator, so lowering code reads like the
equations it implements::

    v = b.add(b.mul(decay, v), b.mul(gain, b.add(v_leak, b.mul(r, current))), "hid.v_new")
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .names import NameScope

__all__ = ["ModelContext", "GraphBuilder", "FLOAT_TYPES", "INT64_MAX"]

#: Supported export dtypes: name -> (numpy dtype, ONNX element type).
FLOAT_TYPES: dict[str, tuple[np.dtype, int]] = {
    "float32": (np.dtype(np.float32), TensorProto.FLOAT),
    "float64": (np.dtype(np.float64), TensorProto.DOUBLE),
}
INT64_MAX = np.iinfo(np.int64).max

Dim = Union[int, str, None]


class ModelContext:
    """State shared by every graph of one model: dtype, opset, names, initializers."""

    def __init__(self, dtype: str, opset: int) -> None:
        self.np_dtype, self.elem_type = FLOAT_TYPES[dtype]
        self.dtype = dtype
        self.opset = int(opset)
        self.names = NameScope()
        self.node_names = NameScope()
        self.initializers: list[TensorProto] = []
        self._cache: dict[tuple, str] = {}

    def _initializer(self, base: str, array: np.ndarray, doc: str) -> str:
        name = self.names.fresh(base)
        tensor = numpy_helper.from_array(np.array(array, order="C"), name)
        if doc:
            tensor.doc_string = doc
        self.initializers.append(tensor)
        return name

    def const(self, base: str, values: object, doc: str = "") -> str:
        """A float initializer in the model's dtype; ``values`` are float64 and cast once here.

        Scalars are shared: asking twice for the same scalar gives the same name.
        """
        arr = np.asarray(values, dtype=np.float64).astype(self.np_dtype)
        if arr.ndim == 0:
            key = ("f", arr.tobytes())
            if key not in self._cache:
                self._cache[key] = self._initializer(base, arr, doc)
            return self._cache[key]
        return self._initializer(base, arr, doc)

    def ints(self, base: str, values: Sequence[int] | int, doc: str = "") -> str:
        """An int64 initializer (shapes, axes, indices); identical values share one name."""
        arr = np.asarray(values, dtype=np.int64)
        key = ("i", arr.shape, arr.tobytes())
        if key not in self._cache:
            self._cache[key] = self._initializer(base, arr, doc)
        return self._cache[key]

    def value_info(self, name: str, shape: Sequence[Dim], doc: str = "", elem_type: Optional[int] = None) -> onnx.ValueInfoProto:
        info = helper.make_tensor_value_info(name, self.elem_type if elem_type is None else elem_type, list(shape))
        if doc:
            info.doc_string = doc
        return info


class GraphBuilder:
    """Nodes, inputs and outputs of one ONNX graph (main graph or Scan body)."""

    def __init__(self, ctx: ModelContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._produced: dict[str, onnx.NodeProto] = {}
        self._exposed: set[str] = set()
        self._alias: dict[str, str] = {}

    # ------------------------------------------------------------------ interface
    def add_input(self, name: str, shape: Sequence[Dim], doc: str = "") -> str:
        """Declare a graph input named exactly ``name`` (allocated by the caller)."""
        self.inputs.append(self.ctx.value_info(name, shape, doc))
        return name

    def expose(self, value: str, name: str, shape: Sequence[Dim], doc: str = "") -> str:
        """Make ``value`` a graph output called ``name``.

        When ``value`` was produced by a node of this graph and is not yet an
        output, that node's output is renamed (no extra node); otherwise an
        Identity node copies it.
        """
        value = self._alias.get(value, value)
        node = self._produced.get(value)
        if node is not None and value not in self._exposed and value != name:
            for k, out in enumerate(node.output):
                if out == value:
                    node.output[k] = name
            for other in self.nodes:
                for k, inp in enumerate(other.input):
                    if inp == value:
                        other.input[k] = name
            del self._produced[value]
            self._produced[name] = node
            self._alias[value] = name
        elif value != name:
            self.node("Identity", [value], [name], name.rsplit(".", 1)[0])
        self._exposed.add(name)
        self.outputs.append(self.ctx.value_info(name, shape, doc))
        return name

    def declare_output(self, name: str, shape: Sequence[Dim], doc: str = "") -> str:
        """Declare the value ``name``, produced under exactly that name, as a graph output."""
        self._exposed.add(name)
        self.outputs.append(self.ctx.value_info(name, shape, doc))
        return name

    def graph(self, doc: str = "", initializers: Sequence[TensorProto] = ()) -> onnx.GraphProto:
        g = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, initializer=list(initializers))
        if doc:
            g.doc_string = doc
        return g

    # ------------------------------------------------------------------ nodes
    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], scope: str, **attrs: object) -> onnx.NodeProto:
        """Append a node with outputs named exactly ``outputs``; its name is ``<scope>/<op>`` (made unique)."""
        inputs = [self._alias.get(i, i) for i in inputs]
        node = helper.make_node(op, inputs, list(outputs), name=self.ctx.node_names.fresh(f"{scope}/{op}"), **attrs)
        self.nodes.append(node)
        for out in outputs:
            self._produced[out] = node
        return node

    def op(self, op: str, inputs: Sequence[str], out: str, **attrs: object) -> str:
        """Append one node with a single output named ``out`` (made unique); returns that name."""
        name = self.ctx.names.fresh(out)
        self.node(op, inputs, [name], out.rsplit(".", 1)[0], **attrs)
        return name

    def add(self, a: str, b: str, out: str) -> str:
        return self.op("Add", [a, b], out)

    def sub(self, a: str, b: str, out: str) -> str:
        return self.op("Sub", [a, b], out)

    def mul(self, a: str, b: str, out: str) -> str:
        return self.op("Mul", [a, b], out)

    def div(self, a: str, b: str, out: str) -> str:
        return self.op("Div", [a, b], out)

    def matmul(self, a: str, b: str, out: str) -> str:
        return self.op("MatMul", [a, b], out)

    def greater(self, a: str, b: str, out: str) -> str:
        return self.op("Greater", [a, b], out)

    def where(self, cond: str, a: str, b: str, out: str) -> str:
        return self.op("Where", [cond, a, b], out)

    def to_float(self, x: str, out: str) -> str:
        """Cast (a boolean) to the model's float type."""
        return self.op("Cast", [x], out, to=self.ctx.elem_type)

    def unsqueeze(self, x: str, axis: int, out: str) -> str:
        return self.op("Unsqueeze", [x, self.ctx.ints(_int_name(axis, "axes_"), [axis])], out)

    def gather(self, x: str, index: str, axis: int, out: str) -> str:
        return self.op("Gather", [x, index], out, axis=axis)

    def concat(self, parts: Sequence[str], axis: int, out: str) -> str:
        return self.op("Concat", list(parts), out, axis=axis)

    def slice(self, x: str, start: int, end: int, axis: int, out: str) -> str:
        c = self.ctx.ints
        return self.op("Slice", [x, c(_int_name(start), [start]), c(_int_name(end), [end]), c(_int_name(axis, "axes_"), [axis])],
                       out)

    def dim(self, x: str, axis: int, out: str) -> str:
        """The size of axis ``axis`` of ``x`` as a 1-D int64 tensor ``[1]`` (works in every opset >= 13)."""
        shape = self.op("Shape", [x], f"{out}.shape")
        return self.gather(shape, self.ctx.ints(_int_name(axis), [axis]), 0, out)

    def zeros(self, shape_parts: Sequence[str], out: str) -> str:
        """A float zero tensor whose shape is the concatenation of the 1-D int64 tensors ``shape_parts``."""
        shape = self.concat(shape_parts, 0, f"{out}.shape") if len(shape_parts) > 1 else shape_parts[0]
        zero = helper.make_tensor("value", self.ctx.elem_type, [1], [0.0])
        return self.op("ConstantOfShape", [shape], out, value=zero)


def _int_name(value: int, prefix: str = "i") -> str:
    """Readable name of a small int64 constant: ``i3``, ``i_minus2``, ``int64_max``."""
    if value == INT64_MAX:
        return "int64_max"
    return f"{prefix}{value}" if value >= 0 else f"{prefix}minus{-value}"
