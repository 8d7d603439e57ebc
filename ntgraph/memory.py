"""Memory estimates of a compiled network, before it is built.

:func:`estimate_memory` validates the graph and runs the pass pipeline (numpy
only), then asks the backend, through the registry, for its estimate: a
backend that can estimate implements the optional method
``estimate_memory(graph, *, batch, steps, mode, dtype, window, optimizer, record, options)
-> (components: dict[str, int], notes: list[str])`` on the prepared graph.  The core never
imports the backend.  The result is a :class:`MemoryReport`: bytes per
component and their sum, the predicted peak of one forward (``inference``) or
one training step (``bptt``, ``tbptt``, ``eprop``).  ``docs/memory.md`` compares
the estimates with measured peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .errors import ValidationError
from .graph import Graph
from .passes import default_pipeline
from .registry import get_backend
from .validate import TIMINGS, check_options, validate

__all__ = ["MemoryReport", "estimate_memory", "MODES", "format_bytes"]

#: What is run: a forward without gradients, full BPTT, truncated BPTT (``window`` steps), e-prop.
MODES = ("inference", "bptt", "tbptt", "eprop")
OPTIMIZERS = (None, "sgd", "momentum", "adam")


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human string (binary units: KiB, MiB, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover


@dataclass(frozen=True)
class MemoryReport:
    """Predicted memory of one compiled network: ``components`` (name -> bytes) and their ``total``."""

    graph: str
    backend: str
    mode: str
    batch: int
    steps: int
    dtype: str
    components: Mapping[str, int]
    window: Optional[int] = None
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        """Predicted peak in bytes: the sum of the components."""
        return int(sum(self.components.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return {"graph": self.graph, "backend": self.backend, "mode": self.mode, "batch": self.batch,
                "steps": self.steps, "window": self.window, "dtype": self.dtype,
                "components": dict(self.components), "total": self.total, "notes": list(self.notes)}

    def __str__(self) -> str:
        run = f"{self.mode}" + (f" (window {self.window})" if self.window else "")
        lines = [f"memory of '{self.graph}' on {self.backend}: {run}, batch {self.batch}, {self.steps} steps, {self.dtype}"]
        width = max([len(k) for k in self.components] + [5])
        for name, n in self.components.items():
            if n:
                lines.append(f"  {name:<{width}}  {format_bytes(n):>10}  ({n} B)")
        lines.append(f"  {'total':<{width}}  {format_bytes(self.total):>10}  ({self.total} B)")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"estimate_memory {name}: expected an integer >= 1, got {value!r}")
    return int(value)


def estimate_memory(
    graph: Graph,
    backend: str = "torch",
    *,
    batch: int = 1,
    steps: int = 100,
    mode: str = "inference",
    dtype: str = "float32",
    window: Optional[int] = None,
    optimizer: Optional[str] = None,
    record: Sequence[str] = (),
    dt: Optional[float] = None,
    timing: str = "sync",
    **backend_options: Any,
) -> MemoryReport:
    """Predict the peak memory of ``graph`` compiled for ``backend``, without building it.

    ``batch`` and ``steps`` (T) size the run; ``mode`` is one of :data:`MODES`
    (``"tbptt"`` needs ``window``, the truncation length in steps);
    ``dtype`` the floating dtype of the compiled module (``"float32"``,
    ``"float64"``, ``"float16"``, ``"bfloat16"``); ``optimizer``
    (``None``, ``"sgd"``, ``"momentum"``, ``"adam"``) adds its state in the
    training modes; ``record`` names probes (``"pop"`` or ``"pop.var"``) kept
    for all steps.  ``dt`` (seconds), when given, is checked against every time
    constant as :func:`ntgraph.compile` does.  Other keyword arguments are the
    backend's compile options (e.g. ``detach_reset`` for torch).
    """
    batch = _positive_int("batch", batch)
    steps = _positive_int("steps", steps)
    if mode not in MODES:
        raise ValidationError(f"estimate_memory mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mode == "tbptt":
        window = _positive_int("window", window)
    elif window is not None:
        raise ValidationError(f"estimate_memory window: only mode='tbptt' takes a window, got window={window!r} with mode={mode!r}")
    if optimizer not in OPTIMIZERS:
        raise ValidationError(f"estimate_memory optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    if not isinstance(dtype, str):
        dtype = str(dtype).replace("torch.", "")
    if dt is not None:
        check_options(dt, "euler", timing)
    elif timing not in TIMINGS:
        raise ValidationError(f"estimate_memory timing: expected one of {', '.join(map(repr, TIMINGS))}, got {timing!r}")
    if isinstance(record, str):
        record = [record]
    validate(graph, dt=dt, timing=timing)
    impl = get_backend(backend)
    if not hasattr(impl, "estimate_memory"):
        raise ValidationError(f"estimate_memory backend {backend!r}: this backend has no memory estimator")
    prepared = default_pipeline().run(graph, timing=timing)
    components, notes = impl.estimate_memory(prepared, batch=batch, steps=steps, mode=mode, dtype=dtype, window=window,
                                             optimizer=optimizer, record=list(record), options=dict(backend_options))
    return MemoryReport(graph.name, backend, mode, batch, steps, dtype, dict(components), window, tuple(notes))
