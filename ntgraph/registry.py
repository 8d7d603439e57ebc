"""Backend discovery and per-backend lowering tables.

Backends are found by name through the ``ntgraph.backends`` entry-point group,
so a third-party package can add one by declaring, in its ``pyproject.toml``::

    [project.entry-points."ntgraph.backends"]
    mytarget = "mypackage.backend:MyBackend"

The object an entry point names is a class (or factory) whose instances have a
``name`` and a ``lower(graph, options) -> artefact`` method.
:func:`register_backend` adds one at run time (tests, notebooks).

:class:`LoweringTable` maps IR types to lowering functions for one backend,
looked up along the class MRO, so a subclass of a supported node lowers like
its parent unless it registers its own function.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Protocol, TypeVar

from .errors import BackendNotFoundError, UnsupportedNodeError

__all__ = [
    "Backend",
    "get_backend",
    "register_backend",
    "available_backends",
    "get_importer",
    "register_importer",
    "LoweringTable",
    "ENTRY_POINT_GROUP",
    "IMPORTER_GROUP",
]

ENTRY_POINT_GROUP = "ntgraph.backends"
#: Entry points named by a file suffix without the dot ("nir"), each a callable ``(path, **options) -> Graph``.
IMPORTER_GROUP = "ntgraph.importers"
_runtime: dict[str, Callable[[], Any]] = {}
_runtime_importers: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


class Backend(Protocol):
    """What :func:`ntgraph.compile` needs from a backend.

    Optional methods, used when present:

    * ``simulate(graph, options, inputs: dict[str, np.ndarray], record: list[str]) -> dict[str, np.ndarray]``
      (:func:`ntgraph.simulate`, ``ntgraph run``);
    * ``export(graph, options, path, **kwargs) -> pathlib.Path`` (``ntgraph export --format NAME``).

    ``graph`` is always the validated graph annotated by the pass pipeline.
    """

    name: str

    def lower(self, graph: Any, options: Any) -> Any: ...


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Names of every registered backend (entry points and run-time registrations)."""
    return sorted(set(_entry_points()) | set(_runtime))


def register_backend(name: str, factory: Callable[[], Any]) -> None:
    """Register ``factory`` (a class or a zero-argument callable) under ``name`` for this process."""
    _runtime[name] = factory


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``."""
    if name in _runtime:
        return _runtime[name]()
    ep = _entry_points().get(name)
    if ep is None:
        raise BackendNotFoundError(
            f"compile target {name!r}: no such backend; expected one of {', '.join(map(repr, available_backends())) or '(none installed)'}"
        )
    try:
        factory = ep.load()
    except ImportError as exc:
        raise BackendNotFoundError(
            f"compile target {name!r}: the backend is registered but cannot be imported ({exc}); "
            f"install its dependencies"
        ) from exc
    return factory()


def register_importer(suffix: str, loader: Callable[..., Any]) -> None:
    """Register ``loader(path, **options) -> Graph`` for files ending in ``.suffix`` (this process only)."""
    _runtime_importers[suffix.lstrip(".").lower()] = loader


def get_importer(suffix: str) -> Callable[..., Any]:
    """The loader for files with ``suffix`` (e.g. ``".nir"``), from entry points or run-time registrations."""
    key = suffix.lstrip(".").lower()
    if key in _runtime_importers:
        return _runtime_importers[key]
    eps = {ep.name: ep for ep in metadata.entry_points(group=IMPORTER_GROUP)}
    if key not in eps:
        known = sorted({"ntg", *eps, *_runtime_importers})
        raise BackendNotFoundError(
            f"file suffix {suffix!r}: no importer; expected one of {', '.join('.' + k for k in known)}"
        )
    try:
        return eps[key].load()
    except ImportError as exc:
        raise BackendNotFoundError(
            f"file suffix {suffix!r}: the importer is registered but cannot be imported ({exc}); install its dependencies"
        ) from exc


class LoweringTable:
    """IR type -> lowering function, for one backend named ``backend``."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._table: dict[type, Callable[..., Any]] = {}

    def register(self, *types: type) -> Callable[[F], F]:
        """Decorator registering a lowering function for ``types``."""

        def deco(fn: F) -> F:
            for t in types:
                self._table[t] = fn
            return fn

        return deco

    def lookup(self, payload: Any, node_id: str) -> Callable[..., Any]:
        """The function for ``type(payload)`` or its nearest registered base class."""
        for cls in type(payload).__mro__:
            if cls in self._table:
                return self._table[cls]
        supported = ", ".join(sorted(t.__name__ for t in self._table))
        raise UnsupportedNodeError(
            f"backend '{self.backend}': node '{node_id}' has type {type(payload).__name__}, which this backend "
            f"cannot lower; supported: {supported}"
        )

    def __contains__(self, cls: type) -> bool:
        return any(c in self._table for c in cls.__mro__)
