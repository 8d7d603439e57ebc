"""Running exported models in onnxruntime with the torch backend's interface.

:class:`OnnxRunner` wraps one ``onnxruntime.InferenceSession`` and reads the
model's ``ntgraph_interface`` metadata, so it drives both export modes the
same way: inputs ``[T, batch, n]`` by Input id, results by Output id and
``"population.variable"`` probe key, exactly the keys the torch backend
returns.  In step mode it loops over time in Python, feeding every ``.next``
state output back; in sequence mode it makes one call.

onnxruntime is imported here only, so exporting needs nothing but ``onnx``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ntgraph.errors import FileFormatError, ShapeError, ValidationError

from .lower import INTERFACE_KEY, INTERFACE_VERSION

__all__ = ["OnnxRunner", "run_onnx"]

ModelLike = Any  # onnx.ModelProto, bytes, a path, or an onnxruntime.InferenceSession
State = dict[str, np.ndarray]


def _session(model: ModelLike, providers: Optional[Sequence[Any]], threads: Optional[int]) -> Any:
    import onnxruntime as ort

    if isinstance(model, ort.InferenceSession):
        return model
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
    if hasattr(model, "SerializeToString"):
        source, what = model.SerializeToString(), "the ONNX model"
    elif isinstance(model, (bytes, bytearray)):
        source, what = bytes(model), "the ONNX model bytes"
    elif isinstance(model, (str, os.PathLike)):
        if not os.path.exists(model):
            raise FileFormatError(f"{os.fspath(model)}: does not exist")
        source, what = os.fspath(model), os.fspath(model)
    else:
        raise ValidationError(
            f"model: expected an onnx.ModelProto, bytes, a path or an onnxruntime.InferenceSession, got {type(model).__name__}"
        )
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise FileFormatError(f"{what}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None


class OnnxRunner:
    """An onnxruntime session of an ntgraph export, with the torch backend's inputs and outputs.

    ``model``: an ``onnx.ModelProto``, serialized bytes, a path, or an existing
    ``InferenceSession``.  ``providers`` (default CPU) and ``threads``
    (intra-op threads, default onnxruntime's choice) configure the session.
    """

    def __init__(self, model: ModelLike, *, providers: Optional[Sequence[Any]] = None,
                 threads: Optional[int] = None) -> None:
        self.session = _session(model, providers, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if INTERFACE_KEY not in meta:
            raise FileFormatError(
                f"model: not an ntgraph export (no '{INTERFACE_KEY}' entry in its metadata_props); "
                f"export it with backends.onnxio.to_onnx"
            )
        try:
            self.interface: dict = json.loads(meta[INTERFACE_KEY])
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"model: metadata '{INTERFACE_KEY}' is not valid JSON ({exc})") from None
        if self.interface.get("version") != INTERFACE_VERSION:
            raise FileFormatError(
                f"model: metadata '{INTERFACE_KEY}' has version {self.interface.get('version')!r}, "
                f"expected {INTERFACE_VERSION}"
            )
        self.metadata: dict[str, str] = dict(meta)
        self.mode: str = self.interface["mode"]
        self.dtype = np.dtype(self.interface["dtype"])
        self.dt = float(meta["dt"])
        self.input_ids = [e["id"] for e in self.interface["inputs"]]
        self._input_size = {e["id"]: int(e["shape"][-1]) for e in self.interface["inputs"]}
        self._input_name = {e["id"]: e["name"] for e in self.interface["inputs"]}
        #: result key (Output id or "pop.var") -> ONNX output name, in the model's output order
        self.result_names: dict[str, str] = {e["id"]: e["name"] for e in self.interface["outputs"]}
        self.result_names.update({e["key"]: e["name"] for e in self.interface["records"]})
        self.state_specs: list[dict] = list(self.interface["state"])
        self._fetch = list(self.result_names.values()) + [s["next"] for s in self.state_specs]

    @property
    def keys(self) -> list[str]:
        """Keys of the results: Output ids, then record keys ``"pop.var"``."""
        return list(self.result_names)

    @property
    def stateful(self) -> bool:
        """True when the state is part of the model's inputs and outputs (step mode, or sequence with state_io)."""
        return bool(self.interface["state_io"])

    def initial_state(self, batch: int) -> State:
        """The state at t=0 for ``batch`` sequences, by ONNX input name (``state.<pop>.<var>``, ``delay.<node>``)."""
        if not self.stateful:
            raise ValidationError("initial_state: this model keeps its state inside (sequence mode without state_io)")
        state: State = {}
        for s in self.state_specs:
            shape = [batch if d == "batch" else int(d) for d in s["shape"]]
            init = np.asarray(s["initial"], dtype=self.dtype)
            state[s["name"]] = np.ascontiguousarray(np.broadcast_to(init, shape), dtype=self.dtype)
        return state

    def _inputs(self, inputs: Union[np.ndarray, Mapping[str, Any]], rank: int) -> dict[str, np.ndarray]:
        layout = "[T, batch, size]" if rank == 3 else "[batch, size]"
        if not isinstance(inputs, Mapping):
            if len(self.input_ids) != 1:
                raise ValidationError(
                    f"inputs: the model has {len(self.input_ids)} inputs {self.input_ids}; pass a dict of arrays by name"
                )
            inputs = {self.input_ids[0]: inputs}
        unknown = sorted(set(inputs) - set(self.input_ids))
        missing = [i for i in self.input_ids if i not in inputs]
        if unknown or missing:
            raise ValidationError(
                f"inputs: expected arrays for {self.input_ids}, got names {sorted(inputs)}"
                + (f" (unknown: {unknown})" if unknown else "") + (f" (missing: {missing})" if missing else "")
            )
        out: dict[str, np.ndarray] = {}
        lead = None
        for name in self.input_ids:
            x = np.asarray(inputs[name])
            size = self._input_size[name]
            if x.ndim != rank or x.shape[-1] != size:
                raise ShapeError(
                    f"Input '{name}': expected an array of shape {layout.replace('size', str(size))}, got shape {x.shape}"
                )
            if x.dtype.kind not in "biuf":
                raise ValidationError(f"Input '{name}': expected a real-valued array, got dtype {x.dtype}")
            if lead is None:
                lead = x.shape[:-1]
            elif x.shape[:-1] != lead:
                raise ShapeError(f"Input '{name}': has leading shape {x.shape[:-1]}, expected {lead} like the other inputs")
            out[name] = np.ascontiguousarray(x, dtype=self.dtype)
        return out

    def _check_state(self, state: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        names = [s["name"] for s in self.state_specs]
        missing = [n for n in names if n not in state]
        if missing:
            raise ValidationError(f"state: missing {missing}; start from runner.initial_state(batch)")
        out = {}
        for s in self.state_specs:
            arr = np.ascontiguousarray(state[s["name"]], dtype=self.dtype)
            shape = tuple(batch if d == "batch" else int(d) for d in s["shape"])
            if arr.shape != shape:
                raise ShapeError(f"state '{s['name']}': expected shape {shape}, got {arr.shape}")
            out[s["name"]] = arr
        return out

    def step(self, inputs_t: Union[np.ndarray, Mapping[str, Any]], state: Mapping[str, np.ndarray]
             ) -> tuple[dict[str, np.ndarray], State]:
        """One step of a step-mode model: inputs ``[batch, n]`` -> (results ``[batch, n]`` by key, next state)."""
        if self.mode != "step":
            raise ValidationError(f"step: the model was exported in {self.mode!r} mode; use run()")
        xs = self._inputs(inputs_t, 2)
        batch = next(iter(xs.values())).shape[0]
        feed = {self._input_name[k]: v for k, v in xs.items()}
        feed.update(self._check_state(state, batch))
        values = self.session.run(self._fetch, feed)
        k = len(self.result_names)
        results = dict(zip(self.result_names, values[:k]))
        return results, {s["name"]: v for s, v in zip(self.state_specs, values[k:])}

    def run(self, inputs: Union[np.ndarray, Mapping[str, Any]], *, state: Optional[Mapping[str, np.ndarray]] = None,
            return_state: bool = False) -> Union[dict[str, np.ndarray], tuple[dict[str, np.ndarray], State]]:
        """Simulate ``T`` steps of inputs ``[T, batch, n]``; results ``[T, batch, n]`` by Output id and record key.

        ``state`` continues from the final state of a previous call (by ONNX
        state name; models with their state in the interface only), and
        ``return_state=True`` also returns the final state.
        """
        xs = self._inputs(inputs, 3)
        steps, batch = next(iter(xs.values())).shape[:2]
        if steps < 1:  # onnxruntime's Scan cannot slice an empty time axis
            raise ShapeError(f"inputs: expected at least one time step, got T={steps}")
        if state is not None and not self.stateful:
            raise ValidationError("state: this sequence model keeps its state inside; export it with state_io=True")
        if return_state and not self.stateful:
            raise ValidationError("return_state: this sequence model keeps its state inside; export it with state_io=True")
        current = self._check_state(state, batch) if state is not None else (
            self.initial_state(batch) if self.stateful else {})
        if self.mode == "sequence":
            feed = {self._input_name[k]: v for k, v in xs.items()}
            feed.update(current)
            values = self.session.run(self._fetch, feed)
            k = len(self.result_names)
            results = dict(zip(self.result_names, values[:k]))
            final = {s["name"]: v for s, v in zip(self.state_specs, values[k:])}
            return (results, final) if return_state else results
        traces: dict[str, list[np.ndarray]] = {key: [] for key in self.result_names}
        fetch, k = self._fetch, len(self.result_names)
        state_names = [s["name"] for s in self.state_specs]
        for t in range(steps):
            feed = {self._input_name[name]: x[t] for name, x in xs.items()}
            feed.update(current)
            values = self.session.run(fetch, feed)
            for key, v in zip(self.result_names, values[:k]):
                traces[key].append(v)
            current = dict(zip(state_names, values[k:]))
        results = {key: np.stack(v) for key, v in traces.items()}
        return (results, current) if return_state else results


def run_onnx(model: ModelLike, inputs: Union[np.ndarray, Mapping[str, Any]], *,
             state: Optional[Mapping[str, np.ndarray]] = None, return_state: bool = False,
             providers: Optional[Sequence[Any]] = None, threads: Optional[int] = None
             ) -> Union[dict[str, np.ndarray], tuple[dict[str, np.ndarray], State]]:
    """Run an exported model (either mode) in onnxruntime on inputs ``[T, batch, n]``.

    Returns numpy arrays ``[T, batch, n]`` keyed like the torch backend's
    results: every Output id and every recorded ``"population.variable"``.
    See :class:`OnnxRunner` for ``state``/``return_state``; build one runner to
    call a model many times without reloading it.
    """
    return OnnxRunner(model, providers=providers, threads=threads).run(inputs, state=state, return_state=return_state)
