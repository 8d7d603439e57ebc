"""Lava processes that move data between the host and a running Lava network in bulk.

Lava's own I/O reads results back through the runtime one value at a time
(``Var.get`` and ``Monitor.get_data`` cost about 27 microseconds per value:
2.9 s for 1000 steps of 100 neurons).  These three processes instead share a
memory-mapped file with the host, one row per time step:

* :class:`BulkSource` sends row ``t`` of its file through ``s_out`` at step ``t``
  (the host writes the inputs before the run, as Lava's ``io.source.RingBuffer``
  but without a ``Var.set`` per value);
* :class:`BulkRecorder` stores what arrives at ``a_in`` at step ``t`` in row ``t``
  (like ``io.sink.RingBuffer``);
* :class:`BulkProbe` stores a Var of another process after step ``t`` (in the
  post-management phase, through a RefPort, like ``io.sink.Read``): the value
  after the neuron's update and reset, as ntgraph's probes.

Recorders and probes also carry a one-value ``tie`` port each; the backend
chains them, so a network whose parts are not connected to one another still
runs as one Lava network (Lava compiles the processes reachable from the one
``run`` is called on).

Rows are indexed by ``(time_step - 1) % steps``, so repeated runs of ``steps``
steps reuse the file.  Each process has a floating-point and a fixed-point
(int32) model; the backend selects them explicitly with the run config's
``exception_proc_model_map``, so Lava never scans this package for models.
Import this module only after :func:`backends.lavasim.compat.import_lava`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

__all__ = ["BulkSource", "BulkRecorder", "BulkProbe", "MODELS"]


_ZERO = np.zeros(1, dtype=np.int32)


def _open(params: Any) -> np.memmap:
    return np.memmap(params["path"], dtype=np.dtype(params["dtype"]), mode="r+", shape=(params["steps"], params["n"]))


class BulkSource(AbstractProcess):
    """Sends row ``(time_step-1) % steps`` of the file at ``path`` (shape ``(steps, n)``) every step."""

    def __init__(self, *, n: int, steps: int, path: str, dtype: str, name: str = None) -> None:  # type: ignore[assignment]
        super().__init__(n=n, steps=steps, path=path, dtype=dtype, name=name)
        self.s_out = OutPort(shape=(n,))


class BulkRecorder(AbstractProcess):
    """Writes what ``a_in`` receives at each step into row ``(time_step-1) % steps`` of the file at ``path``."""

    def __init__(self, *, n: int, steps: int, path: str, dtype: str, name: str = None) -> None:  # type: ignore[assignment]
        super().__init__(n=n, steps=steps, path=path, dtype=dtype, name=name)
        self.a_in = InPort(shape=(n,))
        self.tie_in = InPort(shape=(1,))
        self.tie_out = OutPort(shape=(1,))


class BulkProbe(AbstractProcess):
    """Writes the value of ``var`` after each step into row ``(time_step-1) % steps`` of the file at ``path``."""

    def __init__(self, *, var: Var, steps: int, path: str, dtype: str, name: str = None) -> None:  # type: ignore[assignment]
        n = int(np.prod(var.shape))
        super().__init__(n=n, steps=steps, path=path, dtype=dtype, name=name)
        self.ref = RefPort(var.shape)
        self.ref.connect_var(var)
        self.tie_in = InPort(shape=(1,))
        self.tie_out = OutPort(shape=(1,))


class _SourceModel(PyLoihiProcessModel):
    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._buf = _open(proc_params)

    def run_spk(self) -> None:
        self.s_out.send(np.array(self._buf[(self.time_step - 1) % self._buf.shape[0]]))


class _RecorderModel(PyLoihiProcessModel):
    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._buf = _open(proc_params)

    def run_spk(self) -> None:
        self.tie_out.send(_ZERO)
        self.tie_in.recv()
        self._buf[(self.time_step - 1) % self._buf.shape[0]] = self.a_in.recv()


class _ProbeModel(PyLoihiProcessModel):
    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._buf = _open(proc_params)

    def run_spk(self) -> None:
        self.tie_out.send(_ZERO)
        self.tie_in.recv()

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        self._buf[(self.time_step - 1) % self._buf.shape[0]] = np.asarray(self.ref.read()).ravel()


@implements(proc=BulkSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBulkSourceFloat(_SourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=BulkSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBulkSourceFixed(_SourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


@implements(proc=BulkRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBulkRecorderFloat(_RecorderModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    tie_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    tie_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=BulkRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBulkRecorderFixed(_RecorderModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    tie_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    tie_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)


@implements(proc=BulkProbe, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBulkProbeFloat(_ProbeModel):
    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, float)
    tie_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    tie_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=BulkProbe, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBulkProbeFixed(_ProbeModel):
    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=24)
    tie_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    tie_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)


#: (process class, precision) -> process model class.
MODELS = {
    (BulkSource, "float"): PyBulkSourceFloat,
    (BulkSource, "fixed"): PyBulkSourceFixed,
    (BulkRecorder, "float"): PyBulkRecorderFloat,
    (BulkRecorder, "fixed"): PyBulkRecorderFixed,
    (BulkProbe, "float"): PyBulkProbeFloat,
    (BulkProbe, "fixed"): PyBulkProbeFixed,
}
