"""NIR -> ntgraph: read any valid NIR graph into an ntgraph :class:`~ntgraph.graph.Graph`.

Two readers:

* **ntgraph's own files** (graph metadata ``"ntgraph"``, dialect ``"auto"`` or
  ``"ntgraph"``): every node is rebuilt from its NIR fields plus ntgraph's
  metadata, in the original node order, so the result ``==`` the exported
  graph.  The rebuilt graph is exported again and compared with the file
  field by field; if the NIR fields were edited after export (the metadata is
  stale), a :class:`NirImportWarning` says so and the file is read as plain
  NIR instead, so the NIR fields always win.
* **any NIR graph** (``"nir"``, ``"snntorch"``, ``"norse"``, ``"rockpool"``):

  1. nested ``NIRGraph`` nodes are flattened; their nodes get the prefixed
     ids ``"<subgraph>.<node>"`` and their Input/Output nodes become identities;
  2. every neuron node becomes a population (:mod:`backends.nirio.dialects`);
  3. every path from an Input or a neuron through stateless nodes (Affine,
     Linear, Scale, Conv, pooling, Flatten, Identity, Delay) to a neuron
     becomes one projection whose weight is the exact product of the maps on
     the path (:mod:`backends.nirio.linops`), so ``Affine -> Affine`` chains,
     convolutions and pooling fold into matrices.  Its id is the ids of the
     non-identity nodes on the path joined by ``+`` (``"<src>-><dst>"`` when
     none).  Biases on the way are carried to the target and added to the
     first Dense projection into it.  Delay nodes (seconds) become delays in
     steps of ``dt``; per-neuron delays split the projection by delay value
     (ids ``"<id>@<steps>"``);
  4. cycles without a Delay get delay 1 on their backward edge
     (:func:`backends.nirio.delays.implicit_delays`);
  5. an Output reached from a neuron through identities only reads it; an
     Output behind weights cannot be expressed (ntgraph Outputs read one
     node) and raises :class:`~ntgraph.errors.UnsupportedNodeError`.

Input shapes are flattened in C order; a leading batch dimension of 1
(Rockpool, nirtorch) is dropped.  Assumptions about ambiguous files (snnTorch's
reset mode, Norse's ``dt``, an unrecognised producer) are reported once per
import as a :class:`NirImportWarning` and can be overridden by arguments.
"""

from __future__ import annotations

import copy
import faulthandler
import os
import pathlib
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import nir
import numpy as np

from ntgraph.compiler import CompileOptions, prepare
from ntgraph.errors import FileFormatError, NtgraphError, UnsupportedNodeError, ValidationError
from ntgraph._paths import as_path
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse
from ntgraph.models import MODEL_TYPES
from ntgraph.validate import validate

from . import _codec
from .delays import implicit_delays, seconds_to_steps
from .dialects import DIALECTS, NORSE_DT, SNNTORCH_DT, Context, Unit, convert, detect, rockpool_dt
from .linops import LINEAR_TYPES, Op, make_op, shape_of
from .mapping import PARAM_FIELDS

__all__ = ["from_nir", "NirImportWarning", "MAX_PATHS"]

#: Most source-to-target paths one source may have through stateless nodes.
MAX_PATHS = 100_000
SourceLike = Union[str, os.PathLike, nir.NIRGraph]


class NirImportWarning(UserWarning):
    """An import made an assumption (reset mode, dt, producer) or cannot reproduce a peer exactly."""


class _Stale(Exception):
    """ntgraph's metadata disagrees with the file's NIR fields."""


# ----------------------------------------------------------------------------- loading
def _plain(value: Any) -> Any:
    """numpy for array-likes of other libraries (torch tensors, even ones that require grad)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def _numpy_copy(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A shallow copy of ``graph`` whose node fields are numpy arrays (peers hand over torch tensors)."""
    nodes = {}
    for key, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            nodes[key] = _numpy_copy(node)
            continue
        twin = copy.copy(node)
        for name, value in vars(node).items():
            if name in ("input_type", "output_type") and isinstance(value, dict):
                setattr(twin, name, {k: _plain(v) for k, v in value.items()})
            else:
                setattr(twin, name, _plain(value))
        nodes[key] = twin
    twin_graph = copy.copy(graph)
    twin_graph.nodes = nodes
    twin_graph.edges = [(str(a), str(b)) for a, b in graph.edges]
    return twin_graph


#: Largest array (bytes) one dataset of a ``.nir`` file may declare, and all of them together.
MAX_DATASET_BYTES = 2 * 1024**3
#: Time the forked child may take to read a ``.nir`` file's datasets: this many seconds plus
#: the file's size at :data:`_PROBE_BYTES_PER_S` (libhdf5 loops forever on some corrupt files).
_PROBE_TIMEOUT_S = 10.0
_PROBE_BYTES_PER_S = 50e6


def _probe_in_child(path: pathlib.Path) -> Optional[int]:
    """Read every dataset of ``path`` in a forked child; its exit code (negative: killed by that signal).

    libhdf5 is not hardened against corrupt files: some make it crash the
    process (fuzzing found segfaults in ``Dataset.__getitem__``).  The child
    takes the crash instead.  None where ``os.fork`` does not exist.
    """
    if not hasattr(os, "fork"):
        return None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        # A crash here is the expected outcome for some corrupt files and the parent reports it: keep
        # faulthandler (enabled by pytest, `python -X faulthandler`) from dumping a traceback to stderr.
        faulthandler.disable()
        try:
            import h5py

            def read(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and np.prod(obj.shape, dtype=object) * obj.dtype.itemsize <= MAX_DATASET_BYTES:
                    obj[()]
                    dict(obj.attrs)

            with h5py.File(path, "r") as fh:
                dict(fh.attrs)
                fh.visititems(read)
        except BaseException:  # noqa: BLE001 - the parent reports errors itself
            code = 1
        os._exit(code)
    limit = _PROBE_TIMEOUT_S + path.stat().st_size / _PROBE_BYTES_PER_S
    deadline = time.monotonic() + limit
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise FileFormatError(f"{path}: not a NIR file: reading its HDF5 structure did not finish within "
                                      f"{limit:.0f} s (corrupt, or far too large)")
            time.sleep(0.002)
    except BaseException:  # a time limit, an interrupt: do not leave the child behind
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        raise


def _check_hdf5(path: pathlib.Path) -> None:
    """Refuse, before anything is read, an HDF5 file whose datasets declare more than :data:`MAX_DATASET_BYTES`.

    A corrupt header can declare any shape; without this check h5py would try to allocate it.
    """
    import h5py  # a dependency of nir

    try:
        is_hdf5 = h5py.is_hdf5(str(path))  # reads the superblock signature only
    except (OSError, RuntimeError, ValueError) as exc:
        raise FileFormatError(f"{path}: not a NIR file (cannot be read as HDF5): {exc}") from exc
    if not is_hdf5:
        raise FileFormatError(f"{path}: not a NIR file (not an HDF5 file: no HDF5 signature)")
    status = _probe_in_child(path)
    if status is not None and status < 0:
        raise FileFormatError(f"{path}: not a NIR file: a corrupt HDF5 structure crashed the HDF5 library "
                              f"(signal {-status}) while reading it")
    sizes: list[tuple[str, int]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            sizes.append((name, int(np.prod(obj.shape, dtype=object)) * obj.dtype.itemsize))

    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(visit)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise FileFormatError(f"{path}: not a NIR file (not HDF5, truncated, or corrupt): {exc}") from exc
    for name, size in sizes:
        if size > MAX_DATASET_BYTES:
            raise FileFormatError(f"{path}: dataset {name!r} declares {size} bytes, more than the limit of {MAX_DATASET_BYTES}")
    total = sum(size for _, size in sizes)
    if total > MAX_DATASET_BYTES:
        raise FileFormatError(f"{path}: its datasets declare {total} bytes in all, more than the limit of {MAX_DATASET_BYTES}")


def _load(source: SourceLike) -> tuple[nir.NIRGraph, str]:
    if isinstance(source, nir.NIRGraph):
        return _numpy_copy(source), "nir"
    if isinstance(source, nir.NIRNode):
        raise ValidationError(f"from_nir: expected a NIRGraph or a path, got a single {type(source).__name__} node")
    path = as_path(source, "from_nir")
    if not path.exists():
        raise FileFormatError(f"{path}: does not exist")
    if not path.is_file():
        raise FileFormatError(f"{path}: is not a file")
    _check_hdf5(path)
    try:
        graph = nir.read(path)
    except (OSError, KeyError, RuntimeError) as exc:  # RuntimeError: h5py on a damaged HDF5 structure
        raise FileFormatError(f"{path}: not a NIR file (not HDF5, truncated, or no 'node' group): {exc}") from exc
    except (ValueError, AssertionError, TypeError) as exc:
        try:
            graph = nir.read(path, type_check=False)
        except Exception as exc2:  # noqa: BLE001 - any failure here means a broken file
            raise FileFormatError(f"{path}: not a valid NIR graph: {exc2}") from exc2
        warnings.warn(f"{path}: NIR's type check fails ({exc}); read without it", NirImportWarning, stacklevel=3)
    if not isinstance(graph, nir.NIRGraph):
        raise FileFormatError(f"{path}: holds a single {type(graph).__name__} node, expected a NIRGraph")
    return graph, path.stem


# ----------------------------------------------------------------------------- flattening
def _flatten(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict, list, set, set]:
    """Flat nodes and edges.  Returns (nodes, edges, inner_io, top_io) where inner_io are the
    keys of nested Input/Output nodes (identities) and top_io those of the top level."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    inner: set[str] = set()
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for key, node in graph.nodes.items():
        full = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_inner, sub_io = _flatten(node, f"{full}.")
            for k in sub_nodes:
                if k in nodes:
                    raise ValidationError(f"NIR import: nested node '{k}' clashes with another node of that name")
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            inner |= sub_inner | sub_io
            entry[full] = [k for k in sub_io if isinstance(sub_nodes[k], nir.Input)]
            exit_[full] = [k for k in sub_io if isinstance(sub_nodes[k], nir.Output)]
        else:
            if full in nodes:
                raise ValidationError(f"NIR import: node '{full}' appears twice after flattening nested graphs")
            nodes[full] = node
    top_io = {f"{prefix}{k}" for k, n in graph.nodes.items() if isinstance(n, (nir.Input, nir.Output))}

    def ends(name: str, table: dict, role: str) -> list[str]:
        full = f"{prefix}{name}"
        if full in table:
            if len(table[full]) != 1:
                raise UnsupportedNodeError(
                    f"NIR import: edge to/from subgraph '{full}' is ambiguous: it has {len(table[full])} {role} nodes "
                    f"({sorted(table[full])}); name one of them in the edge"
                )
            return table[full]
        if full not in nodes:
            raise ValidationError(f"NIR import: an edge names '{full}', which is not a node of the graph")
        return [full]

    for a, b in graph.edges:
        for u in ends(a, exit_, "Output"):
            for v in ends(b, entry, "Input"):
                edges.append((u, v))
    return nodes, edges, inner, top_io


# ----------------------------------------------------------------------------- plain-NIR reader
@dataclass
class _Proj:
    id: str
    source: str
    target: str
    payload: Projection


@dataclass
class _Foreign:
    graph: nir.NIRGraph
    name: str
    ctx: Context
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    inner: set = field(default_factory=set)

    def run(self) -> Graph:
        self.nodes, self.edges, inner, _ = _flatten(self.graph)
        self.inner = inner
        self.succ: dict[str, list[str]] = {k: [] for k in self.nodes}
        self.pred: dict[str, list[str]] = {k: [] for k in self.nodes}
        for a, b in self.edges:
            self.succ[a].append(b)
            self.pred[b].append(a)
        inputs = [k for k, n in self.nodes.items() if isinstance(n, nir.Input) and k not in inner]
        outputs = [k for k, n in self.nodes.items() if isinstance(n, nir.Output) and k not in inner]
        neurons = {k: n for k, n in self.nodes.items() if not isinstance(n, LINEAR_TYPES + (nir.Delay,))}
        for k in inputs:
            if self.pred[k]:
                raise ValidationError(f"NIR import: Input '{k}' has incoming edges from {self.pred[k]}")

        in_shapes = {k: self._input_shape(k) for k in inputs}
        self._resolve_dialect(neurons, [tuple(int(v) for v in np.ravel(self.nodes[k].input_type["input"]))
                                        for k in inputs])
        units: dict[str, Unit] = {}
        shapes: dict[str, tuple] = dict(in_shapes)
        for k, node in neurons.items():
            shape = shape_of(node)
            if shape is None:
                raise ValidationError(f"NIR import: neuron node '{k}' ({type(node).__name__}) has no shape")
            units[k] = convert(k, node, shape, self.ctx)
            shapes[k] = shape
        ops = self._ops(shapes)

        projections: list[_Proj] = []
        bias: dict[str, np.ndarray] = {}
        output_src: dict[str, str] = {}
        for src in [*inputs, *neurons]:
            size = int(np.prod(shapes[src]))
            src_id = units[src].exit if src in units else src
            self._walk(src, src_id, ops, units, projections, output_src, size)
        for key, op in ops.items():
            if isinstance(op, Op) and op.offset() is not None:
                self._carry_bias(key, op.offset(), ops, units, bias)
        for pop_id, b in bias.items():
            self._attach_bias(pop_id, b, projections)

        for unit in units.values():
            projections.extend(_Proj(pid, s, t, p) for pid, s, t, p in unit.projections)
        structure = [(p.id, p.source, p.target, p.payload.delay) for p in projections]
        for pid in implicit_delays(structure, inputs):
            p = next(p for p in projections if p.id == pid)
            p.payload = p.payload.replace(delay=1)
        self._report_divergences(units, projections)
        return self._assemble(inputs, outputs, in_shapes, units, projections, output_src)

    # -- shapes and dialect
    def _input_shape(self, key: str) -> tuple:
        """An Input's shape without a batch dimension.

        Producers that trace a model with sample data write the sample's
        shape: Rockpool and nirtorch put a batch dimension of 1 in front, Norse
        the whole batch.  A leading dimension is dropped when it is 1 and the
        shape has more dimensions, or when the nodes the Input feeds expect
        exactly the remaining elements.
        """
        raw = tuple(int(v) for v in np.ravel(self.nodes[key].input_type["input"]))
        if not raw:
            return (1,)
        expected = {n for n in (self._expected_size(s) for s in self.succ[key]) if n is not None}
        if len(raw) >= 2 and int(np.prod(raw)) not in expected and \
                (raw[0] == 1 or (expected and int(np.prod(raw[1:])) in expected)):
            return raw[1:]
        return raw

    def _expected_size(self, key: str) -> Optional[int]:
        node = self.nodes[key]
        if isinstance(node, (nir.Affine, nir.Linear)):
            return int(np.asarray(node.weight).shape[-1])
        if isinstance(node, nir.Delay):
            return int(np.asarray(node.delay).size)
        if isinstance(node, nir.Scale):
            return int(np.asarray(node.scale).size)
        shape = _expected_input(node) if not isinstance(node, LINEAR_TYPES) else None
        if shape is None and not isinstance(node, LINEAR_TYPES):
            shape = shape_of(node)
        return None if shape is None else int(np.prod(shape))

    def _resolve_dialect(self, neurons: dict, input_shapes: list) -> None:
        ctx = self.ctx
        if ctx.dialect == "auto":
            dialect, reason = detect(neurons, input_shapes)
            ctx.dialect = dialect
            ctx.assume(f"read as dialect '{dialect}' ({reason}); pass dialect= to choose another")
        if ctx.dialect == "snntorch":
            ctx.peer_dt = SNNTORCH_DT
            if ctx.dt is None:
                ctx.dt = SNNTORCH_DT
            if ctx.reset is None or ctx.reset_delay is None:
                reset = ctx.reset or "subtract"
                delay = True if ctx.reset_delay is None else ctx.reset_delay
                ctx.assume(
                    f"snnTorch files do not record the reset: assuming reset='{reset}' with reset_delay={delay} "
                    f"(snnTorch's defaults); pass reset='zero'|'subtract' and reset_delay=True|False to override"
                )
                ctx.reset, ctx.reset_delay = reset, delay
        elif ctx.dialect == "norse":
            if ctx.dt is None:
                ctx.dt = NORSE_DT
                ctx.assume(
                    f"Norse writes time constants multiplied by its dt (norse issue 411), which the file does not "
                    f"record: assuming dt={NORSE_DT:g} s (Norse's default); pass dt= the value given to norse's to_nir"
                )
            ctx.peer_dt = ctx.dt
        elif ctx.dialect == "rockpool":
            dts = []
            for n in neurons.values():
                if isinstance(n, (nir.LIF, nir.CubaLIF, nir.LI)):
                    tau = n.tau_mem if isinstance(n, nir.CubaLIF) else n.tau
                    dts.append(np.ravel(rockpool_dt(tau, n.r)))
            found = np.concatenate(dts) if dts else np.array([])
            if found.size == 0 or not np.all(np.isfinite(found)):
                raise ValidationError("NIR import (dialect rockpool): cannot recover dt from r = tau*exp(-dt/tau)/dt")
            dt_r = float(np.median(found))
            if np.max(np.abs(found - dt_r)) > 1e-6 * dt_r:
                ctx.divergences.append(
                    f"the neurons encode different dt in r (from {found.min():g} to {found.max():g} s); using {dt_r:g} s"
                )
            ctx.peer_dt = dt_r
            if ctx.dt is None:
                ctx.dt = dt_r

    def _ops(self, shapes: dict) -> dict[str, Op]:
        """Build every linear op, inferring input shapes from predecessors."""
        ops: dict[str, Any] = {}
        pending = [k for k, n in self.nodes.items() if isinstance(n, LINEAR_TYPES + (nir.Delay,)) and k not in shapes]
        pending = [k for k in pending if not (isinstance(self.nodes[k], nir.Output) and k not in self.inner)]
        progress = True
        while pending and progress:
            progress = False
            for k in list(pending):
                known = [shapes[p] for p in self.pred[k] if p in shapes]
                if not known and self.pred[k]:
                    continue
                node = self.nodes[k]
                if not known:
                    in_shape = shape_of(node)
                    if in_shape is None:
                        raise ValidationError(f"NIR import: node '{k}' ({type(node).__name__}) has no input and no shape")
                else:
                    in_shape = known[0]
                    if any(int(np.prod(s)) != int(np.prod(in_shape)) for s in known):
                        raise ValidationError(f"NIR import: node '{k}' receives inputs of different sizes {known}")
                if isinstance(node, nir.Delay):
                    ops[k] = ("delay", np.broadcast_to(np.asarray(node.delay, dtype=np.float64),
                                                       in_shape).ravel().copy(), in_shape)
                    shapes[k] = in_shape
                else:
                    expected = _expected_input(node)
                    if expected is not None and tuple(expected) != tuple(in_shape) and \
                            int(np.prod(expected)) == int(np.prod(in_shape)):
                        in_shape = tuple(expected)  # a shape quirk: same elements, other layout (batch dims)
                    ops[k] = make_op(k, node, tuple(in_shape))
                    shapes[k] = ops[k].out_shape
                pending.remove(k)
                progress = True
        if pending:
            raise ValidationError(f"NIR import: cannot infer the shapes of {sorted(pending)} (a cycle of stateless nodes?)")
        return ops

    # -- paths
    def _walk(self, src: str, src_id: str, ops: dict, units: dict, out: list, output_src: dict, size: int) -> None:
        """Follow every path from ``src``; ``terms`` are ``(delay, matrix)`` with None for the identity."""
        stack: list = [(nxt, [(0, None)], (), (src,)) for nxt in reversed(self.succ[src])]
        count = 0
        while stack:
            key, terms, names, visited = stack.pop()
            count += 1
            if count > MAX_PATHS:
                raise UnsupportedNodeError(f"NIR import: more than {MAX_PATHS} paths leave '{src}'; the graph is too dense in stateless nodes")
            node = self.nodes[key]
            if key in units:
                unit = units[key]
                self._emit(src, src_id, key, unit.entry, terms, names, out)
                continue
            if isinstance(node, nir.Output) and key not in self.inner:
                if len(terms) != 1 or terms[0][0] != 0 or terms[0][1] is not None or names:
                    raise UnsupportedNodeError(
                        f"NIR import: Output '{key}' reads '{src}' through weights or delays ({', '.join(names) or 'delay'}); "
                        f"an ntgraph Output reads one Input or population directly"
                    )
                if key in output_src and output_src[key] != src_id:
                    raise UnsupportedNodeError(
                        f"NIR import: Output '{key}' has several sources ('{output_src[key]}', '{src_id}'); "
                        f"an ntgraph Output reads exactly one"
                    )
                output_src[key] = src_id
                continue
            if isinstance(node, nir.Input) and key not in self.inner:
                raise ValidationError(f"NIR import: edge into Input '{key}'")
            if key in visited:
                raise UnsupportedNodeError(
                    f"NIR import: the cycle {' -> '.join([*visited[visited.index(key):], key])} has no neuron; "
                    f"a loop of stateless nodes is an algebraic loop, not a recurrent network"
                )
            op = ops[key]
            if isinstance(op, tuple):  # a Delay node: split the terms by delay value
                steps = seconds_to_steps(op[1], self._dt_for_delay(key), f"Delay '{key}'")
                values = np.unique(steps)
                new = []
                for d, m in terms:
                    if values.size == 1:
                        new.append((d + int(values[0]), m))
                        continue
                    full = np.eye(steps.size) if m is None else m
                    for s in values:
                        new.append((d + int(s), np.where((steps == s)[:, None], full, 0.0)))
                terms = new
            else:
                rows = size if terms[0][1] is None else terms[0][1].shape[0]
                if rows != op.n_in:
                    raise ValidationError(
                        f"NIR import: node '{key}' ({op.kind}) expects {op.n_in} inputs, its input has {rows}"
                    )
                terms = [(d, _apply(op, m)) for d, m in terms]
                if not op.identity:
                    names = (*names, key)
            for nxt in reversed(self.succ[key]):
                stack.append((nxt, terms, names, (*visited, key)))

    def _size(self, key: str) -> int:
        node = self.nodes[key]
        if isinstance(node, nir.Input):
            return int(np.prod(self._input_shape(key)))
        return int(np.prod(shape_of(node)))

    def _dt_for_delay(self, key: str) -> float:
        if self.ctx.dt is None:
            raise ValidationError(
                f"NIR import: Delay '{key}' is in seconds; pass dt= (the time step in seconds) to convert it to steps"
            )
        return self.ctx.dt

    def _emit(self, src: str, src_id: str, key: str, target: str, terms: list, names: tuple, out: list) -> None:
        kinds = {type(self.nodes[n]).__name__ for n in names}
        taken = {p.id for p in out}
        base = "+".join(names) if names else _unique_id(f"{src_id}->{target}", set(self.nodes))
        for d, m in terms:
            if m is None:
                m = np.eye(self._size(src))
            n_post = m.shape[0]
            pid = base if len(terms) == 1 else f"{base}@{d}"
            pid = _unique_id(pid, taken)
            taken.add(pid)
            if names and kinds <= {"Scale"} and m.shape[0] == m.shape[1] and np.count_nonzero(m - np.diag(np.diag(m))) == 0:
                payload: Projection = OneToOne(weight=np.diag(m).copy(), delay=d)
            elif not names and m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(n_post)):
                payload = OneToOne(weight=np.ones(n_post), delay=d, learnable=())
            elif kinds & {"Conv1d", "Conv2d", "SumPool2d", "AvgPool2d"}:
                post, pre = np.nonzero(m)
                payload = Sparse(weight=m[post, pre], post_index=post, pre_index=pre, n_post=m.shape[0],
                                 n_pre=m.shape[1], delay=d)
            else:
                payload = Dense(weight=m, delay=d)
            out.append(_Proj(pid, src_id, target, payload))

    def _carry_bias(self, start: str, b: np.ndarray, ops: dict, units: dict, acc: dict) -> None:
        stack = [(nxt, b[:, None]) for nxt in self.succ[start]]
        while stack:
            key, m = stack.pop()
            if key in units:
                entry = units[key].entry
                acc[entry] = acc.get(entry, 0.0) + m[:, 0]
                continue
            node = self.nodes[key]
            if isinstance(node, nir.Output) and key not in self.inner:
                raise UnsupportedNodeError(f"NIR import: Output '{key}' receives a bias from '{start}' directly")
            op = ops[key]
            if isinstance(op, tuple):
                self.ctx.divergences.append(
                    f"the bias of '{start}' passes through Delay '{key}': NIR delays it (zero for the first steps), "
                    f"ntgraph adds it from the first step"
                )
            else:
                m = op.apply(m)
            stack.extend((nxt, m) for nxt in self.succ[key])

    @staticmethod
    def _attach_bias(pop_id: str, b: np.ndarray, projections: list) -> None:
        into = [p for p in projections if p.target == pop_id]
        if not into:
            raise UnsupportedNodeError(f"NIR import: population '{pop_id}' receives a bias but no projection")
        dense = next((p for p in into if isinstance(p.payload, Dense)), None)
        if dense is None:
            dense = into[0]
            dense.payload = Dense(weight=dense.payload.dense_weight(), delay=dense.payload.delay)
        old = dense.payload.bias
        bias = b if old is None else old + b
        dense.payload = dense.payload.replace(bias=np.asarray(bias, dtype=np.float64), learnable=("weight", "bias"))

    def _report_divergences(self, units: dict, projections: list) -> None:
        ctx = self.ctx
        if ctx.dialect == "snntorch" and ctx.reset == "zero" and ctx.reset_delay:
            recurrent = {p.target for p in projections if p.source == p.target and not p.id.endswith(".reset_delay")}
            for key, node in self.nodes.items():
                if key in units and (isinstance(node, nir.CubaLIF) or units[key].exit in recurrent):
                    ctx.divergences.append(
                        f"'{key}': snnTorch's {'Synaptic' if isinstance(node, nir.CubaLIF) else 'RLeaky'} with "
                        f"reset_mechanism='zero' and reset_delay=True zeroes the whole update after a spike, input "
                        f"included; ntgraph zeroes the voltage only"
                    )
        if ctx.dialect == "rockpool":
            ctx.divergences.append(
                "Rockpool thresholds with v >= v_th and may emit several spikes per step (floor(v/v_th)); ntgraph "
                "spikes once when v > v_th"
            )

    def _assemble(self, inputs: list, outputs: list, in_shapes: dict, units: dict, projections: list,
                  output_src: dict) -> Graph:
        graph = Graph(self.name)
        for k in inputs:
            graph.add(k, Input(size=int(np.prod(in_shapes[k]))))
        # Populations in breadth-first order from the inputs (projection by projection), then the rest.
        order: list[str] = []
        frontier = list(inputs)
        seen = set(inputs)
        by_source: dict[str, list[_Proj]] = {}
        for p in projections:
            by_source.setdefault(p.source, []).append(p)
        unit_of = {u.entry: k for k, u in units.items()}
        unit_of.update({u.exit: k for k, u in units.items()})
        while frontier:
            nxt = []
            for n in frontier:
                for p in by_source.get(n, []):
                    k = unit_of.get(p.target)
                    if k is not None and k not in seen:
                        seen.add(k)
                        order.append(k)
                        nxt.append(units[k].exit)
            frontier = nxt
        order += [k for k in units if k not in seen]
        added: set[str] = set()

        def flush() -> None:
            for p in projections:
                if p.id not in added and p.source in graph and p.target in graph:
                    graph.add(p.id, p.payload, source=p.source, target=p.target)
                    added.add(p.id)

        for k in order:
            for pop_id, pop in units[k].populations:
                graph.add(pop_id, pop)
            flush()
        flush()
        for k in outputs:
            if k not in output_src:
                raise UnsupportedNodeError(f"NIR import: Output '{k}' has no source (no edge into it)")
            graph.add(k, Output(size=graph.node_size(output_src[k])), source=output_src[k])
        return graph


def _apply(op: Op, m: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """``A @ m`` where None stands for the identity (never materialised for Affine, Linear or Scale)."""
    if op.identity:
        return m
    if m is None:
        if "weight" in op.params:
            return np.array(op.params["weight"])
        if op.diagonal is not None:
            return np.diag(op.diagonal)
        return op.apply(np.eye(op.n_in))
    return op.apply(m)


def _expected_input(node: nir.NIRNode) -> Optional[tuple]:
    if isinstance(node, (nir.Affine, nir.Linear, nir.Input, nir.Output, nir.ir.graph.Identity, nir.SumPool2d,
                         nir.AvgPool2d)):
        return None
    value = (getattr(node, "input_type", None) or {}).get("input")
    if value is None:
        return None
    return tuple(int(v) for v in np.ravel(value))


def _unique_id(base: str, taken: set) -> str:
    key, k = base, 2
    while key in taken:
        key, k = f"{base}#{k}", k + 1
    return key


# ----------------------------------------------------------------------------- ntgraph's own files
def _own(graph: nir.NIRGraph, meta: dict) -> Graph:
    """Rebuild the exact ntgraph Graph from a file ntgraph wrote; raises _Stale when it disagrees."""
    by_id: dict[str, tuple[str, dict, nir.NIRNode]] = {}
    delay_of: dict[str, str] = {}
    for key, node in graph.nodes.items():
        m = _codec.decode(node.metadata, f"NIR node '{key}'")
        if m is None:
            if isinstance(node, (nir.Input, nir.Output)):
                continue  # added by NIR's type inference for a population without input/output
            raise _Stale(f"node '{key}' has no ntgraph metadata")
        if m.get("kind") == "Delay":
            delay_of[m["projection"]] = key
            continue
        by_id[m["id"]] = (key, m, node)
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        pred[b].append(a)
        succ[a].append(b)
    key_to_id = {key: node_id for node_id, (key, _, _) in by_id.items()}
    order = meta.get("order")
    if not isinstance(order, list) or set(order) != set(by_id):
        raise _Stale("the node list in the graph metadata does not match the nodes")

    def one(keys: list[str], what: str) -> str:
        if len(keys) != 1:
            raise _Stale(f"{what}: expected one edge, found {len(keys)}")
        return keys[0]

    out = Graph(str(meta.get("name", "nir")), int(meta.get("seed", 0)))
    for node_id in order:
        key, m, node = by_id[node_id]
        kind = m.get("kind")
        try:
            if kind == "Input":
                out.add(node_id, Input(size=m["size"], constraints=m.get("constraints", ())))
            elif kind == "Output":
                src = key_to_id[one(pred[key], f"Output '{node_id}'")]
                out.add(node_id, Output(size=m["size"]), source=src)
            elif kind == "Population":
                out.add(node_id, _own_population(node_id, m, node))
            elif kind in ("Dense", "Sparse", "OneToOne"):
                src_key = one(pred[key], f"projection '{node_id}'")
                if node_id in delay_of:
                    src_key = one(pred[src_key], f"Delay of '{node_id}'")
                src = key_to_id[src_key]
                dst = key_to_id[one(succ[key], f"projection '{node_id}'")]
                out.add(node_id, _own_projection(node_id, kind, m, node), source=src, target=dst)
            else:
                raise _Stale(f"node '{key}' has an unknown ntgraph kind {kind!r}")
        except (KeyError, TypeError, NtgraphError) as exc:
            raise _Stale(f"node '{node_id}': {exc}") from exc
    return out


def _own_population(node_id: str, m: dict, node: nir.NIRNode) -> Population:
    cls = MODEL_TYPES.get(m.get("model"))
    if cls is None or cls not in PARAM_FIELDS:
        raise _Stale(f"unknown model {m.get('model')!r}")
    kwargs: dict[str, Any] = dict(m.get("fields", {}))
    for name, field_name in PARAM_FIELDS[cls].items():
        kwargs[name] = np.array(getattr(node, field_name), dtype=np.float64) if field_name else m["params"][name]
    return Population(model=cls(**kwargs), size=m["size"], constraints=m.get("constraints", ()),
                      learnable=m.get("learnable", ()))


def _own_projection(node_id: str, kind: str, m: dict, node: nir.NIRNode) -> Projection:
    common = {"delay": m["delay"], "constraints": m.get("constraints", ()), "learnable": m.get("learnable", ())}
    if kind == "Dense":
        if not isinstance(node, (nir.Affine, nir.Linear)):
            raise _Stale(f"expected an Affine or Linear node, found {type(node).__name__}")
        bias = np.array(node.bias, dtype=np.float64) if m.get("bias") else None
        return Dense(weight=np.array(node.weight, dtype=np.float64), bias=bias, **common)
    if kind == "OneToOne":
        if isinstance(node, nir.Scale):
            w = np.array(node.scale, dtype=np.float64)
        elif isinstance(node, nir.Linear):
            w = np.diag(np.asarray(node.weight, dtype=np.float64)).copy()
        else:
            raise _Stale(f"expected a Scale or Linear node, found {type(node).__name__}")
        return OneToOne(weight=w, **common)
    dense = np.asarray(node.weight, dtype=np.float64)
    post, pre = np.asarray(m["post_index"]), np.asarray(m["pre_index"])
    weight = m["weight"] if "weight" in m else dense[post, pre]
    return Sparse(weight=weight, post_index=post, pre_index=pre, n_post=m["n_post"], n_pre=m["n_pre"], **common)


def _same_file(original: nir.NIRGraph, again: nir.NIRGraph) -> Optional[str]:
    """None when two NIR graphs hold the same nodes, fields and edges; else what differs."""
    mine = {k: n for k, n in original.nodes.items() if _codec.KEY in (n.metadata or {})}
    theirs = {k: n for k, n in again.nodes.items() if _codec.KEY in (n.metadata or {})}
    if set(mine) != set(theirs):
        return f"nodes differ: {sorted(set(mine) ^ set(theirs))}"
    for k, a in mine.items():
        b = theirs[k]
        if type(a) is not type(b):
            return f"node '{k}' is a {type(a).__name__}, ntgraph writes a {type(b).__name__}"
        for f in ("weight", "bias", "scale", "delay", "tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold",
                  "v_reset", "w_in"):
            if hasattr(b, f):
                x, y = getattr(a, f, None), getattr(b, f)
                if x is None or not np.array_equal(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)):
                    return f"node '{k}'.{f} differs from what its ntgraph metadata gives"
    edges = lambda g: {(a, b) for a, b in g.edges if a in mine and b in mine}  # noqa: E731
    if edges(original) != edges(again):
        return "the edges differ from those ntgraph wrote"
    return None


def _read_own(graph: nir.NIRGraph, meta: dict) -> Graph:
    from .export import lower

    rebuilt = _own(graph, meta)
    one_to_one = "linear" if any(isinstance(n, nir.Linear) and (_codec.decode(n.metadata, k) or {}).get("kind") == "OneToOne"
                                 for k, n in graph.nodes.items()) else "scale"
    try:
        options = CompileOptions(dt=meta["dt"], discretization=meta.get("discretization", "euler"),
                                 timing=meta.get("timing", "sync"), extra={"one_to_one": one_to_one})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = lower(prepare(rebuilt, options), options)
    except (KeyError, NtgraphError) as exc:
        raise _Stale(str(exc)) from exc
    problem = _same_file(graph, again)
    if problem is not None:
        raise _Stale(problem)
    return rebuilt


# ----------------------------------------------------------------------------- entry point
def from_nir(
    source: SourceLike,
    dialect: str = "auto",
    *,
    dt: Optional[float] = None,
    discretization: str = "euler",
    reset: Optional[str] = None,
    reset_delay: Optional[bool] = None,
    name: Optional[str] = None,
) -> Graph:
    """Read a NIR graph (a ``.nir`` path or a ``nir.NIRGraph``) into an ntgraph Graph.

    ``dialect``: ``"auto"`` (ntgraph's own files exactly, else the producer
    recognised from the parameters, else plain NIR with a warning),
    ``"ntgraph"`` (own files only), ``"nir"``, ``"snntorch"``, ``"norse"`` or
    ``"rockpool"`` (see :mod:`backends.nirio.dialects`).

    ``dt`` (seconds): the step the graph will be simulated at.  It converts
    Delay nodes to steps; for snnTorch (default 1e-4) and Rockpool (default:
    the dt hidden in the file) time constants are rescaled so that a
    simulation at ``dt`` reproduces the peer step for step; for Norse it must
    be the ``dt`` given to Norse's exporter (default 1e-3, with a warning).
    ``discretization``: the one the graph will be simulated with
    (``"euler"``/``"exact"``); peers' per-step decays are matched exactly for it.
    ``reset`` (``"zero"``/``"subtract"``) and ``reset_delay`` (snnTorch) override
    the reset a dialect assumes.  ``name`` overrides the graph's name.

    The graph's ``attrs["nir"]`` records the dialect, dt and discretization used.
    """
    if dialect not in DIALECTS:
        raise ValidationError(f"from_nir dialect: expected one of {', '.join(map(repr, DIALECTS))}, got {dialect!r}")
    if discretization not in ("euler", "exact"):
        raise ValidationError(f"from_nir discretization: expected 'euler' or 'exact', got {discretization!r}")
    if reset not in (None, "zero", "subtract"):
        raise ValidationError(f"from_nir reset: expected 'zero' or 'subtract', got {reset!r}")
    if reset_delay is not None and not isinstance(reset_delay, (bool, np.bool_)):
        raise ValidationError(f"from_nir reset_delay: expected True or False, got {reset_delay!r}")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float)) or not np.isfinite(dt) or dt <= 0):
        raise ValidationError(f"from_nir dt: expected a positive time step in seconds, got {dt!r}")
    graph, stem = _load(source)
    meta = _codec.decode(graph.metadata, "NIR graph")
    if dialect == "ntgraph" and (meta is None or meta.get("format") != "ntgraph"):
        raise FileFormatError("from_nir(dialect='ntgraph'): the file holds no ntgraph metadata (not written by ntgraph)")
    if meta is not None and meta.get("format") == "ntgraph" and dialect in ("auto", "ntgraph"):
        if int(meta.get("version", 0)) > 1:
            raise FileFormatError(
                f"NIR file written by a newer ntgraph (metadata version {meta.get('version')}); upgrade ntgraph"
            )
        try:
            result = _read_own(graph, meta)
            if name is not None:
                result.name = name
            result.attrs["nir"] = {"dialect": "ntgraph", "dt": meta.get("dt"),
                                   "discretization": meta.get("discretization"), "timing": meta.get("timing")}
            return result
        except _Stale as exc:
            if dialect == "ntgraph":
                raise FileFormatError(f"ntgraph metadata of this NIR file is stale: {exc}") from None
            warnings.warn(
                f"the ntgraph metadata of this NIR file disagrees with its NIR fields ({exc}); the file was edited "
                f"after ntgraph wrote it, so it is read as plain NIR (the NIR fields win)",
                NirImportWarning, stacklevel=2,
            )
            dialect = "nir"
            dt = meta.get("dt") if dt is None else dt
    elif meta is not None and meta.get("format") == "ntgraph" and dt is None:
        dt = meta.get("dt")
    ctx = Context(dialect=dialect, dt=None if dt is None else float(dt), discretization=discretization,
                  reset=reset, reset_delay=reset_delay)
    result = _Foreign(graph, name or str((meta or {}).get("name", stem)), ctx).run()
    validate(result)
    notes = ctx.assumptions + [f"not reproduced exactly: {d}" for d in ctx.divergences]
    if notes:
        warnings.warn("NIR import: " + "; ".join(notes), NirImportWarning, stacklevel=2)
    result.attrs["nir"] = {"dialect": ctx.dialect, "dt": ctx.dt, "discretization": ctx.discretization,
                           "timing": "sync"}
    return result
