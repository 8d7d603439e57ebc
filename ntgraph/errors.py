"""Exception hierarchy of ntgraph.

Every error ntgraph raises derives from :class:`NtgraphError` and also from the
builtin exception that fits, so ``except ValueError`` keeps working for callers
that do not know ntgraph.  Messages name the node id, the attribute, the bad
value and what was expected, e.g.::

    Projection 'hid->out'.weight: expected shape (20, 256), got (256, 20)
"""

from __future__ import annotations

__all__ = [
    "NtgraphError",
    "ValidationError",
    "ShapeError",
    "CycleError",
    "ConstraintError",
    "FileFormatError",
    "UnsupportedNodeError",
    "BackendNotFoundError",
    "MissingDependencyError",
    "TrainingInterrupted",
]


class NtgraphError(Exception):
    """Base class of every error raised by ntgraph."""


class ValidationError(NtgraphError, ValueError):
    """A graph, a node attribute, an option or a run-time input is invalid."""


class ShapeError(ValidationError):
    """Array or tensor shapes do not agree."""


class CycleError(ValidationError):
    """A cycle of the graph has no delayed projection to cut it."""


class ConstraintError(ValidationError):
    """A constraint is inconsistent with the weights or with another constraint."""


class FileFormatError(NtgraphError, ValueError):
    """A file is truncated, corrupt, of a foreign format or of an unsupported version."""


class UnsupportedNodeError(NtgraphError, TypeError):
    """A backend has no lowering for a node type."""


class BackendNotFoundError(NtgraphError, LookupError):
    """No backend is registered under the requested name."""


class MissingDependencyError(NtgraphError, ImportError):
    """An optional dependency is not installed; the message names the extra to install
    (e.g. ``pip install 'ntgraph[data]'``)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT) at a safe point, after saving a checkpoint.

    A :class:`KeyboardInterrupt`, not an :class:`NtgraphError`: nothing is wrong,
    and code that does not handle it ends as on any Ctrl-C (``except Exception``
    does not swallow it).  ``path`` is the checkpoint written (None when the
    trainer has no checkpoint directory: its in-memory state is then consistent
    and another ``fit`` continues), ``epoch`` and ``iteration`` the counters saved.
    """

    def __init__(self, message: str, path: object = None, epoch: int = 0, iteration: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.epoch = epoch
        self.iteration = iteration
