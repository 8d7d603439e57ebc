"""ntgraph's own versioned file format (suffix ``.ntg``): save and load a :class:`Graph`.

A file is a zip archive (deflate-compressed) holding

* ``manifest.json``: ``{"format": "ntgraph", "version": 1, "ntgraph_version": ...,
  "graph": {"name", "seed", "nodes": [{"id", "payload"}, ...], "edges": [[src, dst], ...]}}``
  with nodes and edges in the graph's order;
* one ``arrays/<k>.npy`` member per numpy array, in numpy's ``.npy`` format
  (exact dtype and shape, read back without pickle).

Payloads are encoded generically, so a new IR class needs no code here, only a
registration in :data:`ntgraph.ir.NODE_TYPES`, :data:`ntgraph.models.MODEL_TYPES`
or :data:`ntgraph.constraints.CONSTRAINT_TYPES`:

=====================  =====================================================
value                  JSON encoding
=====================  =====================================================
None, bool, int, str   as is
float                  as is; ``{"__float__": "inf" | "-inf" | "nan"}`` if not finite
numpy array            ``{"__array__": "<member>"}``
numpy scalar           ``{"__scalar__": "<member>"}`` (a 0-d array member)
tuple / list           ``{"__tuple__": [...]}`` / ``[...]``
dict (str keys)        ``{"__dict__": {...}}``
registered dataclass   ``{"__type__": "<ClassName>", "fields": {name: value}}``
=====================  =====================================================

Loading looks classes up in those registries only (never by importing a name
from the file) and rebuilds every payload with ``cls(**fields)``, so the
payloads' own validation runs again.  Node ``meta`` and graph ``attrs`` are
pass annotations and are not saved.

Files are written atomically (see :mod:`ntgraph._atomic`).  Every problem with a
file being read raises :class:`~ntgraph.errors.FileFormatError` naming the path
and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import pathlib
import zipfile
import zlib
from typing import Any, Callable, Iterator, Union

import networkx as nx
import numpy as np

from ._atomic import atomic_write
from ._paths import as_path, check_write_path
from .constraints import CONSTRAINT_TYPES
from .errors import FileFormatError, UnsupportedNodeError, ValidationError
from .graph import Graph
from .ir import NODE_TYPES, Node
from .models import MODEL_TYPES

__all__ = [
    "save",
    "load",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUFFIX",
    "MAX_MEMBER_BYTES",
    "MAX_MANIFEST_BYTES",
]

FORMAT_NAME = "ntgraph"
FORMAT_VERSION = 1
#: Recommended file suffix (not enforced).
SUFFIX = ".ntg"
#: Largest uncompressed size of one array member, written or read.
MAX_MEMBER_BYTES = 2 * 1024**3
#: Largest uncompressed size of ``manifest.json``, written or read.
MAX_MANIFEST_BYTES = 64 * 1024**2

MANIFEST = "manifest.json"
PathLike = Union[str, os.PathLike]

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_NPY_VERSIONS = ((1, 0), (2, 0))
_ZIP64_THRESHOLD = 1024**3  # stream members this large as zip64
# What a damaged zip archive can raise while it is opened, decompressed and parsed
# (NotImplementedError: unknown zip version or compression; RuntimeError: encrypted).
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError,
)


# ---------------------------------------------------------------- registry
def _type_registry() -> dict[str, type]:
    """The classes a file may name: IR nodes, neuron models and constraints.

    Built at call time, so classes registered after import are included.
    """
    registry: dict[str, type] = {}
    for table in (NODE_TYPES, MODEL_TYPES, CONSTRAINT_TYPES):
        for name, cls in table.items():
            if registry.setdefault(name, cls) is not cls:
                raise TypeError(f"ntgraph.io: two registered classes share the name {name!r}")
    return registry


# ---------------------------------------------------------------- saving
class _Encoder:
    """Turns payloads into JSON-ready values, collecting their arrays as members."""

    def __init__(self) -> None:
        self.arrays: list[tuple[str, np.ndarray]] = []
        self._members: dict[int, str] = {}
        self._names = {cls: name for name, cls in _type_registry().items()}

    def graph(self, graph: Graph) -> dict[str, Any]:
        """The manifest's ``graph`` entry: name, seed, nodes and edges in order."""
        return {
            "name": graph.name,
            "seed": graph.seed,
            "nodes": [{"id": node_id, "payload": self.encode(p, f"node {node_id!r}")} for node_id, p in graph.items()],
            "edges": [[src, dst] for src, dst in graph.edges()],
        }

    def encode(self, value: Any, where: str) -> Any:
        """Encode one value; ``where`` locates it for error messages."""
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if type(value) is np.ndarray:
            return {"__array__": self._member(value, where)}
        if isinstance(value, np.generic):
            return {"__scalar__": self._member(np.asarray(value), where)}
        if type(value) is tuple:
            return {"__tuple__": [self.encode(v, f"{where}[{k}]") for k, v in enumerate(value)]}
        if type(value) is list:
            return [self.encode(v, f"{where}[{k}]") for k, v in enumerate(value)]
        if type(value) is dict:
            return {"__dict__": self._dict(value, where)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._dataclass(value, where)
        raise ValidationError(f"{where}: cannot save a value of type {type(value).__name__} ({value!r})")

    def _dict(self, value: dict, where: str) -> dict[str, Any]:
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValidationError(f"{where}: cannot save a dict with non-string key {bad[0]!r}")
        return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}

    def _dataclass(self, value: Any, where: str) -> dict[str, Any]:
        name = self._names.get(type(value))
        if name is None:
            raise UnsupportedNodeError(
                f"{where}: cannot save a {type(value).__name__}: only classes registered in ntgraph.ir.NODE_TYPES, "
                "ntgraph.models.MODEL_TYPES and ntgraph.constraints.CONSTRAINT_TYPES can be saved"
            )
        fields = {f.name: self.encode(getattr(value, f.name), f"{where}.{f.name}")
                  for f in dataclasses.fields(value) if f.init}
        return {"__type__": name, "fields": fields}

    def _member(self, arr: np.ndarray, where: str) -> str:
        """Register ``arr`` as an archive member (once per array object) and return its name."""
        if arr.dtype.hasobject:
            raise ValidationError(f"{where}: cannot save an array of dtype {arr.dtype} (object arrays need pickle)")
        if arr.nbytes > MAX_MEMBER_BYTES - 65536:
            raise ValidationError(
                f"{where}: array of shape {arr.shape} ({arr.nbytes} bytes) exceeds the format's limit of "
                f"{MAX_MEMBER_BYTES} bytes per array"
            )
        name = self._members.get(id(arr))
        if name is None:
            name = self._members[id(arr)] = f"arrays/{len(self.arrays)}.npy"
            self.arrays.append((name, arr))
        return name


def _ntgraph_version() -> str:
    """``ntgraph.__version__``, or ``"0"`` when the package does not provide it (yet)."""
    try:
        from . import __version__
    except ImportError:
        return "0"
    return str(__version__)


def save(graph: Graph, path: PathLike) -> pathlib.Path:
    """Write ``graph`` to ``path`` in ntgraph's format and return the path.

    The suffix ``.ntg`` is recommended but not enforced.  The write is atomic:
    on any error an existing file at ``path`` is left untouched and no
    temporary file remains.  Node ``meta`` and ``graph.attrs`` are not saved.

    Raises :class:`~ntgraph.errors.UnsupportedNodeError` for a payload (or a
    nested dataclass) whose class is not registered, and
    :class:`~ntgraph.errors.ValidationError` for a value the format cannot hold
    (an object array, an array over :data:`MAX_MEMBER_BYTES`), naming the node.
    """
    if not isinstance(graph, Graph):
        raise ValidationError(f"ntgraph.io.save graph: expected a Graph, got {type(graph).__name__}")
    dest = check_write_path(path, "ntgraph.io.save")
    encoder = _Encoder()
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "ntgraph_version": _ntgraph_version(),
        "graph": encoder.graph(graph),
    }
    text = json.dumps(manifest, indent=1, allow_nan=False, ensure_ascii=False).encode("utf-8")
    if len(text) > MAX_MANIFEST_BYTES:
        raise ValidationError(f"graph '{graph.name}': its manifest ({len(text)} bytes) exceeds {MAX_MANIFEST_BYTES} bytes")
    with atomic_write(dest, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, text)
        for name, arr in encoder.arrays:
            with zf.open(name, "w", force_zip64=arr.nbytes >= _ZIP64_THRESHOLD) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
    return dest


# ---------------------------------------------------------------- loading
def _error(path: pathlib.Path, what: str) -> FileFormatError:
    """The error for a bad file: its path, then what is wrong."""
    return FileFormatError(f"{path}: {what}")


@contextlib.contextmanager
def _archive_errors(path: pathlib.Path, what: str) -> Iterator[None]:
    """Turn the errors a damaged zip archive raises into a FileFormatError saying ``what``."""
    try:
        yield
    except FileFormatError:
        raise
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a real I/O error, not a damaged file (EINVAL: seek to a bad offset)
            raise
        raise _error(path, f"{what}: {exc}") from exc
    except _ARCHIVE_ERRORS as exc:
        raise _error(path, f"{what}: {exc}") from exc


def _open_archive(path: pathlib.Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip archive, or say why it is not one."""
    if not path.exists():
        raise _error(path, "does not exist")
    if not path.is_file():
        raise _error(path, "is not a file")
    with _archive_errors(path, "not an ntgraph file (not a zip archive, or truncated)"):
        return zipfile.ZipFile(path)


def _member_info(zf: zipfile.ZipFile, path: pathlib.Path, name: str, limit: int, what: str) -> zipfile.ZipInfo:
    """The entry of member ``name``, refusing one that is missing or declares more than ``limit`` bytes."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _error(path, f"{what}: member {name!r} is missing") from None
    if info.file_size > limit:
        raise _error(path, f"{what}: member {name!r} declares {info.file_size} bytes, more than the limit of {limit}")
    return info


def _read_manifest(zf: zipfile.ZipFile, path: pathlib.Path) -> dict[str, Any]:
    """Read and check ``manifest.json``: format name, then version."""
    info = _member_info(zf, path, MANIFEST, MAX_MANIFEST_BYTES, "not an ntgraph file")
    with _archive_errors(path, f"member {MANIFEST!r} is corrupt"):
        raw = zf.read(info)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _error(path, f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _error(path, f"not an ntgraph file ({MANIFEST} gives format {found!r}, expected {FORMAT_NAME!r})")
    version = manifest.get("version")
    if type(version) is not int or version < 1:
        raise _error(path, f"invalid format version {version!r} in {MANIFEST}")
    if version > FORMAT_VERSION:
        raise _error(
            path, f"written by a newer ntgraph: version {version}, this ntgraph reads up to {FORMAT_VERSION} "
            f"(the file says ntgraph {manifest.get('ntgraph_version', '?')}); upgrade ntgraph to read it"
        )
    return manifest


class _Decoder:
    """Turns manifest values back into payloads, reading array members on demand."""

    def __init__(self, zf: zipfile.ZipFile, path: pathlib.Path) -> None:
        self._zf = zf
        self._path = path
        self._registry = _type_registry()
        self._arrays: dict[str, np.ndarray] = {}
        self._tags: dict[str, Callable[[dict, str], Any]] = {
            "__type__": self._dataclass,
            "__array__": self._array_ref,
            "__scalar__": self._scalar_ref,
            "__tuple__": self._tuple,
            "__float__": self._float,
            "__dict__": self._dict,
        }

    def error(self, what: str) -> FileFormatError:
        return _error(self._path, what)

    def payload(self, value: Any, node_id: str) -> Node:
        """Decode the payload of node ``node_id``; it must be an IR node."""
        payload = self.decode(value, f"node {node_id!r}")
        if not isinstance(payload, Node):
            raise self.error(f"node {node_id!r}: expected a node payload, got {type(payload).__name__}")
        return payload

    def decode(self, value: Any, where: str) -> Any:
        """Decode one value; ``where`` locates it for error messages."""
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is list:
            return [self.decode(v, f"{where}[{k}]") for k, v in enumerate(value)]
        if type(value) is dict:
            tags = [k for k in value if k in self._tags]
            if len(tags) != 1:
                raise self.error(f"{where}: unrecognised encoded value with keys {sorted(value)}")
            return self._tags[tags[0]](value, where)
        raise self.error(f"{where}: unexpected JSON value {value!r}")  # pragma: no cover - json gives no other types

    def _dataclass(self, value: dict, where: str) -> Any:
        name, fields = value["__type__"], value.get("fields")
        if set(value) != {"__type__", "fields"} or not isinstance(name, str) or not isinstance(fields, dict):
            raise self.error(f"{where}: malformed object, expected {{'__type__': name, 'fields': {{...}}}}")
        cls = self._registry.get(name)
        if cls is None:
            raise self.error(f"{where}: unknown type {name!r} (known: {', '.join(sorted(self._registry))})")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise self.error(f"{where}: {name} has no field {unknown[0]!r} (fields: {', '.join(sorted(names))})")
        kwargs = {k: self.decode(v, f"{where}.{k}") for k, v in fields.items()}
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise self.error(f"{where}: invalid {name}: {exc}") from exc

    def _tuple(self, value: dict, where: str) -> tuple:
        items = value["__tuple__"]
        if len(value) != 1 or type(items) is not list:
            raise self.error(f"{where}: malformed tuple, expected {{'__tuple__': [...]}}")
        return tuple(self.decode(v, f"{where}[{k}]") for k, v in enumerate(items))

    def _float(self, value: dict, where: str) -> float:
        text = value["__float__"]
        if len(value) != 1 or not isinstance(text, str) or text not in _NONFINITE:
            raise self.error(f"{where}: malformed float {value!r}, expected one of {', '.join(_NONFINITE)}")
        return _NONFINITE[text]

    def _dict(self, value: dict, where: str) -> dict:
        items = value["__dict__"]
        if len(value) != 1 or type(items) is not dict:
            raise self.error(f"{where}: malformed dict, expected {{'__dict__': {{...}}}}")
        return {k: self.decode(v, f"{where}[{k!r}]") for k, v in items.items()}

    def _array_ref(self, value: dict, where: str) -> np.ndarray:
        return self._array(value, "__array__", where)

    def _scalar_ref(self, value: dict, where: str) -> np.generic:
        arr = self._array(value, "__scalar__", where)
        if arr.ndim != 0:
            raise self.error(f"{where}: a numpy scalar must be stored as a 0-d array, got shape {arr.shape}")
        return arr[()]

    def _array(self, value: dict, tag: str, where: str) -> np.ndarray:
        """The array stored in the member ``value[tag]`` names (read once, returned read-only)."""
        name = value[tag]
        if len(value) != 1 or not isinstance(name, str):
            raise self.error(f"{where}: malformed array reference {value!r:.80}, expected {{{tag!r}: member name}}")
        if name not in self._arrays:
            info = _member_info(self._zf, self._path, name, MAX_MEMBER_BYTES, where)
            with _archive_errors(self._path, f"member {name!r} is corrupt"):
                arr = self._read_npy(info)
            arr.setflags(write=False)
            self._arrays[name] = arr
        return self._arrays[name]

    def _read_npy(self, info: zipfile.ZipInfo) -> np.ndarray:
        """Read an ``.npy`` member after checking that its header agrees with its size.

        Raises ValueError (reported as a corrupt member) for a bad header or size.
        """
        fmt = np.lib.format
        with self._zf.open(info) as fh:
            version = fmt.read_magic(fh)
            if version not in _NPY_VERSIONS:
                raise ValueError(f"unsupported .npy format version {version}")
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            if dtype.hasobject:
                raise self.error(f"member {info.filename!r}: object arrays are not allowed (they need pickle)")
            declared = fh.tell() + math.prod(shape) * dtype.itemsize
            if declared != info.file_size:
                raise ValueError(
                    f"its header declares a {dtype} array of shape {shape} ({declared} bytes with the header) "
                    f"but the member holds {info.file_size} bytes"
                )
            fh.seek(0)
            return fmt.read_array(fh, allow_pickle=False)


def _graph_entries(graph: Any, path: pathlib.Path) -> tuple[str, int, list, list]:
    """Check the shape of the manifest's ``graph`` entry; return name, seed, nodes, edges."""
    if not isinstance(graph, dict):
        raise _error(path, f"{MANIFEST}: 'graph' must be an object, got {graph!r:.80}")
    name, seed = graph.get("name"), graph.get("seed", 0)
    nodes, edges = graph.get("nodes"), graph.get("edges")
    if not isinstance(name, str):
        raise _error(path, f"{MANIFEST}: graph 'name' must be a string, got {name!r:.80}")
    if type(seed) is not int:
        raise _error(path, f"{MANIFEST}: graph 'seed' must be an integer, got {seed!r:.80}")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise _error(path, f"{MANIFEST}: graph 'nodes' and 'edges' must be lists")
    return name, seed, nodes, edges


def _node_entry(entry: Any, k: int, seen: set, path: pathlib.Path) -> tuple[str, Any]:
    """Check node entry number ``k``; return its id and encoded payload."""
    if not isinstance(entry, dict) or "payload" not in entry:
        raise _error(path, f"{MANIFEST}: node #{k} must be an object with 'id' and 'payload'")
    node_id = entry.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise _error(path, f"{MANIFEST}: node #{k} has an invalid id {node_id!r}, expected a non-empty string")
    if node_id in seen:
        raise _error(path, f"{MANIFEST}: node id {node_id!r} appears twice")
    seen.add(node_id)
    return node_id, entry["payload"]


def _edge_entries(edges: list, nodes: set, path: pathlib.Path) -> list[tuple[str, str]]:
    """Check the edge list: pairs of known node ids, no duplicates."""
    result: list[tuple[str, str]] = []
    for k, edge in enumerate(edges):
        if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(n, str) for n in edge)):
            raise _error(path, f"{MANIFEST}: edge #{k} must be a pair of node ids, got {edge!r:.80}")
        missing = [n for n in edge if n not in nodes]
        if missing:
            raise _error(path, f"{MANIFEST}: edge #{k} {edge[0]!r} -> {edge[1]!r} names an unknown node {missing[0]!r}")
        result.append((edge[0], edge[1]))
    if len(set(result)) != len(result):
        raise _error(path, f"{MANIFEST}: the edge list holds duplicate edges")
    return result


def _assemble(name: str, seed: int, nodes: list[tuple[str, Node]], edges: list[tuple[str, str]]) -> Graph:
    """Build a Graph with exactly this node and edge order (as :meth:`Graph.copy` does)."""
    graph = Graph(name, seed)
    g: nx.DiGraph = graph._g
    for node_id, payload in nodes:
        g.add_node(node_id, payload=payload, meta={})
    g.add_edges_from(edges)
    return graph


def load(path: PathLike) -> Graph:
    """Read a graph written by :func:`save`.

    The result equals the saved graph (``==``: name, node order, edges and
    payloads); its seed is restored too, ``meta`` and ``attrs`` start empty.
    Every payload is rebuilt through its class, so its validation runs again.

    Raises :class:`~ntgraph.errors.FileFormatError`, naming the path and the
    problem, for a missing file, a file that is not an ntgraph archive (not a
    zip, truncated, foreign content), a newer format version, an unknown type,
    a missing or corrupt array member, or a payload that fails validation.
    """
    src = as_path(path, "ntgraph.io.load")
    with _open_archive(src) as zf:
        manifest = _read_manifest(zf, src)
        name, seed, node_entries, edge_entries = _graph_entries(manifest.get("graph"), src)
        decoder = _Decoder(zf, src)
        seen: set[str] = set()
        nodes = []
        for k, entry in enumerate(node_entries):
            node_id, encoded = _node_entry(entry, k, seen, src)
            try:
                nodes.append((node_id, decoder.payload(encoded, node_id)))
            except RecursionError as exc:
                raise _error(src, f"node {node_id!r}: payload nested too deeply") from exc
        edges = _edge_entries(edge_entries, seen, src)
    return _assemble(name, seed, nodes, edges)
