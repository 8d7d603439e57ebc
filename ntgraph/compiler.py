"""The compiler driver: ``compile(graph, target, dt=..., ...)`` = validate -> passes -> lower."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import ValidationError
from .graph import Graph
from .passes import Pipeline, default_pipeline
from .registry import get_backend
from .validate import check_inputs, check_options, check_train_args, validate

__all__ = ["CompileOptions", "compile", "prepare", "simulate", "train"]


@dataclass(frozen=True)
class CompileOptions:
    """Options every target understands, plus backend-specific ``extra`` options.

    ``dt``: the time step in seconds.  ``discretization``: ``"euler"`` (NIR and
    Lava convention) or ``"exact"`` (exponential).  ``timing``: ``"sync"``
    (undelayed projections act within the step) or ``"pipelined"`` (every
    projection one step later, as on Lava and neuromorphic chips).
    """

    dt: float
    discretization: str = "euler"
    timing: str = "sync"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_options(self.dt, self.discretization, self.timing)
        object.__setattr__(self, "dt", float(self.dt))


def prepare(graph: Graph, options: CompileOptions, pipeline: Optional[Pipeline] = None) -> Graph:
    """Validate ``graph`` against ``options`` and run the passes; returns the annotated copy."""
    validate(graph, dt=options.dt, timing=options.timing)
    pipeline = default_pipeline() if pipeline is None else pipeline
    return pipeline.run(graph, dt=options.dt, discretization=options.discretization, timing=options.timing)


def compile(  # noqa: A001 - the natural name; ntgraph.compile shadows the builtin only inside the package namespace
    graph: Graph,
    target: str = "torch",
    *,
    dt: Optional[float] = None,
    discretization: str = "euler",
    timing: str = "sync",
    pipeline: Optional[Pipeline] = None,
    **backend_options: Any,
) -> Any:
    """Compile ``graph`` for ``target`` (``"torch"``, ...).

    ``dt`` (seconds) is required: it is never a hidden constant.  Other keyword
    arguments go to the backend (for the torch backend: ``batch_first``,
    ``record``, ``surrogate``, ``detach_reset``).  Returns the backend's
    artefact, e.g. a ``torch.nn.Module`` for ``"torch"``.
    """
    if dt is None:
        raise ValidationError("compile option dt: required (the time step in seconds, e.g. dt=1e-3)")
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing, extra=dict(backend_options))
    backend = get_backend(target)
    prepared = prepare(graph, options, pipeline)
    return backend.lower(prepared, options)


def simulate(
    graph: Graph,
    inputs: Union[np.ndarray, Mapping[str, np.ndarray]],
    *,
    target: str = "torch",
    dt: Optional[float] = None,
    discretization: str = "euler",
    timing: str = "sync",
    record: Sequence[str] = (),
    **backend_options: Any,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``target`` without gradients and return numpy arrays.

    ``inputs``: one array ``[T, batch, size]`` per Input, as a dict by name (or
    a single array when the graph has one Input).  Returns every Output by
    name and every probe in ``record`` as ``"population.variable"``, each
    ``[T, batch, n]``.  The backend must provide ``simulate``; this keeps
    callers such as the CLI free of any backend's array type.
    """
    if dt is None:
        raise ValidationError("simulate option dt: required (the time step in seconds, e.g. dt=1e-3)")
    if not isinstance(inputs, Mapping):
        if len(graph.inputs) != 1:
            raise ValidationError(
                f"inputs: the graph has {len(graph.inputs)} Inputs {graph.inputs}; pass a dict of arrays by name"
            )
        inputs = {graph.inputs[0]: inputs}
    if isinstance(record, str):
        record = [record]
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing, extra=dict(backend_options))
    backend = get_backend(target)
    if not hasattr(backend, "simulate"):
        raise ValidationError(f"target {target!r}: this backend cannot simulate (it only exports)")
    prepared = prepare(graph, options)
    check_inputs(prepared, inputs)
    return backend.simulate(prepared, options, dict(inputs), list(record))


def train(
    graph: Graph,
    data: Any,
    *,
    target: str = "torch",
    dt: Optional[float] = None,
    discretization: str = "euler",
    timing: str = "sync",
    output: Optional[str] = None,
    task: str = "classification",
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 5e-3,
    algorithm: str = "bptt",
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: Any = None,
    resume: bool = False,
    **backend_options: Any,
) -> tuple[Graph, dict[str, float]]:
    """Train ``graph`` on ``data`` with a backend that can learn; return the trained graph and test metrics.

    ``data`` is a :class:`ntgraph.data.Splits` (train/val/test) whose samples are
    ``[T, features]`` arrays.  ``output`` names the Output the loss reads
    (default: the graph's only Output).  The trained values come back as a new
    IR graph, from which every export starts.  For full control use the
    backend's own trainer (``backends.torchsim.learning.Trainer``).
    ``checkpoint_dir``: where the trainer writes ``last.pt``/``best.pt`` (Ctrl-C
    saves there too, raising :class:`~ntgraph.errors.TrainingInterrupted`);
    ``resume=True`` continues from the newest checkpoint in it.
    """
    if dt is None:
        raise ValidationError("train option dt: required (the time step in seconds, e.g. dt=1e-3)")
    if output is None:
        if len(graph.outputs) != 1:
            raise ValidationError(f"train output: the graph has Outputs {graph.outputs}; name the one the loss reads")
        output = graph.outputs[0]
    elif output not in graph.outputs:
        raise ValidationError(f"train output: expected one of the graph's Outputs {graph.outputs}, got {output!r}")
    missing = [s for s in ("train", "val", "test") if not hasattr(data, s)]
    if missing:
        raise ValidationError(
            f"train data: expected an ntgraph.data.Splits with train, val and test datasets, got {type(data).__name__} "
            f"(no {', '.join(missing)})"
        )
    check_train_args(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, task=task, algorithm=algorithm)
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing, extra=dict(backend_options))
    backend = get_backend(target)
    if not hasattr(backend, "train"):
        raise ValidationError(f"target {target!r}: this backend cannot train")
    return backend.train(prepare(graph, options), options, data, output=output, task=task, epochs=epochs,
                         batch_size=batch_size, lr=lr, algorithm=algorithm, seed=seed, progress=progress,
                         **({} if checkpoint_dir is None else {"checkpoint_dir": checkpoint_dir, "resume": resume}))
