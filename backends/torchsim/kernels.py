"""Compiled CPU kernels (numba) for the scans' time loops and the event extraction.

A scan's time loop is inherently sequential, and at the sizes of typical SNN
training (``[B, n]`` = ``[64, 128]`` per step) each PyTorch operation in the
loop costs more to dispatch (~3-5 us) than to compute: the LIF forward takes
~4 operations per step and its backward ~8.  These kernels run the same
recurrences as :mod:`.scan` in one compiled call each, with each row's state
in cache.  Measured in whole SHD-shaped training steps here (2026-11-23, 2
threads, float32, ``[100, 64, 128]``, ``kernels.disabled()`` against the
kernels in the same process, medians of 10): LIF 14.9 against 28.8 ms with a
self-projection and 10.5 against 20.4 without; ALIF 20.9 against 61.0 and
18.4 against 42.7; IF 19.3 against 40.8 and 13.7 against 28.3.

The kernels compute the operations of the PyTorch loops they replace in the
same order per element, so they agree with them up to rounding (the recurrent
product is summed in another order, from the events of the binary spikes, and
LLVM may contract a multiply-add); ``tests/test_kernels.py`` and
``tests/test_fast_paths.py`` check them against the loops and the step-by-step
reference.

**Writing a kernel that vectorizes.**  Two rules, each worth 2-6x here:

* *one array written per inner loop.*  LLVM vectorizes a loop over arrays
  that may alias only behind runtime overlap checks, and gives up beyond ~8
  of them: a loop writing the membrane, the spikes and the state stayed
  scalar (the LIF forward's elementwise part took 2.6 against 0.4 ms split
  into one loop per written array);
* *IEEE division* (``error_model="numpy"``): numba's default raises
  ``ZeroDivisionError``, a branch per division that keeps the loop scalar
  (the surrogate's ``1 / (1 + k|x|)^2``: the feed-forward backward took 1.4
  against 0.8 ms).

The spikes and input events are listed through byte flags (one vectorized
comparison per row) packed 8 at a time into a 64-bit mask with one multiply,
whose set bits are visited with ``trailing_zeros`` (:func:`_append_flagged`).

* :func:`lif_forward`: the LIF recurrence of :class:`.scan.LIFScan`, with the
  population's delayed self-projection.  Its product ``z_{t-d} W'^T`` is summed
  from the rows of ``W'^T`` of the neurons that spiked, which the kernel lists
  as it computes the spikes (``O(|z| n)`` per row instead of ``O(n^2)``, with
  no extraction pass); the list is returned (the events of the spikes, row by
  row) for the self-projection's weight gradient and for the projections that
  read the spikes (:func:`.events.attach_events`).
* :func:`lif_backward_detached`: the fused backward of a detached reset (the
  backend's default), ``gz_t = dL/dz_t + (dL/dI_{t+d}) W``,
  ``G_t = gz_t psi(x_t) + (dL/dv_t + a G_{t+1})(1 - z_t | 1)``, ``dL/dI_t = G_t (1-a) r``.
  ``dL/dI`` is dense, so its self-projection term is a GEMM per step, called
  from the kernel on torch's own BLAS (:data:`TORCH_BLAS`).
* IF populations (:class:`.scan_rate.IFScan`) run on :func:`lif_forward` and
  :func:`lif_backward_detached` with ``a = 1`` and no leak.
* :func:`cuba_forward` / :func:`cuba_backward_detached`: CubaLIF with a
  self-projection (:class:`.scan_cuba.CubaScan`), the same kernels with a
  synaptic current ``i_t = b i_{t-1} + U_t + z_{t-d} W'^T`` between the input
  and the membrane, and its adjoint ``H_t = G_t gain + b H_{t+1}`` in the
  backward.  A recurrent CubaLIF training step at ``[100, 64, 128]`` took
  18.0 against 79.4 ms on the step loop.
* :func:`alif_forward` / :func:`alif_backward_detached`: the same for the ALIF
  scan (adaptive threshold; the backward carries the adaptation's adjoint).
* :func:`linear_forward` / :func:`linear_backward`: ``y_t = u_t + k y_{t-1}``
  (LI readouts, synaptic currents) and its adjoint ``g_t = dL/dy_t + k g_{t+1}``.
* :func:`row_events` / :func:`by_column`: the nonzero entries of a spike
  matrix, row by row in one pass, and ordered by column with a counting sort
  (the event-driven input projection, :class:`.events.RowEvents`).

The rate scans (Wilson-Cowan, rate units) are not compiled: their activation
(``exp``/``tanh`` per entry and step) has no vectorized form in numba without
Intel's SVML, and a scalar ``exp`` per entry costs more than the PyTorch
loop's dispatch it would save.

**Threads.**  Torch's own OpenMP runtime is the only one that gets the
cores: its worker threads keep spinning after each parallel torch operation,
so anything else running beside them competes with them.  Measured here and
lost: numba's OpenMP layer (it loads a second runtime), a split of the batch
over Python threads (the kernels release the GIL), and a second BLAS with its
own threads inside a kernel; each kernel took as long as on one thread or
longer, and the torch operations around it slowed down.  So:

* the forward kernels run on the calling thread;
* the backward's per-step GEMM is torch's own BLAS (MKL in the x86 wheels, on
  torch's OpenMP threads);
* the LIF/IF/CubaLIF backward splits the batch over torch's threads inside a
  parallel region of torch's own runtime (``GOMP_parallel`` with a compiled
  body, :data:`PARALLEL`; each thread runs the whole time loop for its rows,
  which are independent, with a single-threaded GEMM of its rows per step).
  Whole training steps, split against one thread, same process: 19.1 against
  20.4 ms at ``[100, 64, 128]`` with a self-projection, 37.6 against 43.6 at
  ``[250, 32, 256]``, 79.3 against 81.0 at ``[100, 64, 512]``; no change
  without a self-projection at H = 128.  The ALIF backward is not split yet.

They are used only for CPU tensors of float32 or float64 whose per-neuron
parameters broadcast to ``[n]``, when numba is installed and the kernels are
enabled (:func:`enabled`; the environment variable ``NTGRAPH_KERNELS=0`` or
:func:`disabled` turn them off), and where they pay (:func:`pays`);
otherwise the scans run their PyTorch loops.  The first call of each kernel
per dtype compiles it, and numba caches it on disk next to this file (or in its
user cache when that folder is read-only): measured here, the first SHD training
step after installing took 13 s, and 1.1 s in later processes (the cache loads
included).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

try:  # numba is a dependency of the torch extra; without it the scans run their PyTorch loops
    import numba
    from numba import carray, cfunc, njit, types
    from numba.cpython.unsafe.numbers import trailing_zeros
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None


def _load_torch_blas() -> bool:
    """Make the Fortran BLAS ``sgemm_``/``dgemm_`` of torch's own library callable from the kernels.

    torch's CPU library carries its BLAS (MKL in the x86 wheels), which runs on
    torch's OpenMP threads: a GEMM called from a kernel runs on the same threads
    as torch's ``addmm`` and does not compete with them (a second BLAS, with
    its own threads, did).  False where the library does not export both
    symbols; then the backward kernels with a self-projection run one compiled
    call per step beside torch's GEMM.
    """
    if numba is None:
        return False
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        library = ctypes.CDLL(path)
        library.sgemm_, library.dgemm_
    except (OSError, AttributeError):  # pragma: no cover - other platforms and builds
        return False
    import llvmlite.binding

    llvmlite.binding.load_library_permanently(path)
    return True


#: Whether the kernels call torch's BLAS (:func:`_load_torch_blas`); tests switch it off to cover the fallback.
TORCH_BLAS = _load_torch_blas()


def _load_torch_openmp() -> Optional[Any]:
    """``GOMP_parallel`` of the GNU OpenMP runtime that torch's library runs on (as a ctypes function), with the
    runtime's symbols made callable from the kernels; None where torch runs on another runtime or none.

    A parallel region opened with it runs on torch's own OpenMP threads, the ones that spin after each
    parallel torch operation, so the kernels' threads and torch's do not compete for the cores (numba's own
    OpenMP layer loads a second runtime, whose threads did).
    """
    if numba is None or not TORCH_BLAS:
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = sorted(set(re.findall(r"(/\S*/libgomp[^/\s]*\.so[^/\s]*)", fh.read())))
    except OSError:  # pragma: no cover - not Linux
        return None
    if len(paths) != 1:  # pragma: no cover - none, or more than one runtime: do not guess which is torch's
        return None
    try:
        library = ctypes.CDLL(paths[0])
        parallel = library.GOMP_parallel
        library.omp_get_thread_num, library.omp_get_num_threads
    except (OSError, AttributeError):  # pragma: no cover - another runtime under that name
        return None
    parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    import llvmlite.binding

    llvmlite.binding.load_library_permanently(paths[0])
    return parallel


_GOMP_PARALLEL = _load_torch_openmp()
#: Whether the backward kernels split the batch over torch's OpenMP threads (:func:`_load_torch_openmp`; only
#: with more than one torch thread); tests switch it off to compare with one thread.
PARALLEL = _GOMP_PARALLEL is not None

__all__ = ["enabled", "disabled", "pays", "usable", "param_vector", "surrogate_code", "lif_forward",
           "lif_backward_detached", "cuba_forward", "cuba_backward_detached", "alif_forward", "alif_backward_detached",
           "linear_forward", "linear_backward", "row_events", "by_column", "TORCH_BLAS", "KERNEL_MAX_STEP_ELEMENTS"]

#: The scans without a self-projection use the kernels only while a step's ``[B, n]`` has fewer entries than this;
#: above it, the PyTorch loops, whose operations run on all of torch's threads.  Measured here in whole SHD-shaped
#: feed-forward training steps (2026-11-23, 2 threads, float32, ``[100, 64, H]``), kernels against loops: 29.2
#: against 42.1 ms at H = 512, 89.6 against 118.1 at H = 1024 and 284.5 against 315.9 at H = 2048 (131072 entries
#: a step).  (Before the kernels' loops vectorized, they lost from 32768 entries on: 41.4 against 23.0 ms for the
#: scan alone at H = 512.)  Not measured with more threads, where the loops' share grows.  With a self-projection
#: the kernels are used at any size (event-driven recurrence, spike lists, one call for the backward).
KERNEL_MAX_STEP_ELEMENTS = 1 << 18

_enabled = os.environ.get("NTGRAPH_KERNELS", "1") not in ("0", "false", "off")


def enabled() -> bool:
    """Whether the scans use these kernels where they apply (numba installed and not turned off)."""
    return _enabled and numba is not None


@contextmanager
def disabled() -> Iterator[None]:
    """Run the scans on their PyTorch loops inside the block (the reference the kernels are tested against)."""
    global _enabled
    before = _enabled
    _enabled = False
    try:
        yield
    finally:
        _enabled = before


def pays(batch: int, n: int, recurrent: bool) -> bool:
    """Whether a scan of ``[B, n]`` steps (with a self-projection or not) should use the kernels; see
    :data:`KERNEL_MAX_STEP_ELEMENTS`."""
    return recurrent or batch * n < KERNEL_MAX_STEP_ELEMENTS


def usable(*tensors: Optional[Tensor]) -> bool:
    """Whether the kernels apply to these tensors: enabled, all on the CPU, one dtype of float32/float64."""
    if not enabled():
        return False
    dtype = None
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
            return False
        if dtype is None:
            dtype = t.dtype
        elif t.dtype != dtype:
            return False
    return True


def param_vector(value: Tensor, n: int) -> Optional[np.ndarray]:
    """A per-neuron parameter (``()``, ``(1,)`` or ``(n,)``) as a contiguous ``[n]`` array, or None if it is not one."""
    if value.ndim > 1 or value.ndim == 1 and value.shape[0] not in (1, n):
        return None
    return value.detach().expand(n).contiguous().numpy()


def surrogate_code(surrogate: Any) -> Optional[tuple[int, float, float]]:
    """``(kind, p0, p1)`` of a surrogate the backward kernel computes, or None (then the PyTorch loop runs).

    Only the exact built-in classes qualify (a subclass may change the derivative): see the surrogate's
    ``kernel_code``.
    """
    code = getattr(surrogate, "kernel_code", None)
    return code() if callable(code) else None


def _np(t: Tensor) -> np.ndarray:
    """A contiguous NumPy view of a CPU tensor (a copy only if it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _constants(code: tuple[int, float, float], dtype: np.dtype) -> np.ndarray:
    """The surrogate's constants in the data's dtype (numba would promote float32 arithmetic with a float64
    literal to float64): ``[1, slope, 0, 0]`` (fast sigmoid), ``[1, alpha/2, pi/2*alpha, 0]`` (arctan),
    ``[1, gamma, width, 0]`` (triangle), as the PyTorch surrogates compute them."""
    kind, p0, p1 = code
    if kind == 2:
        return np.array([1.0, p0 / 2.0, math.pi / 2.0 * p0, 0.0], dtype=dtype)
    return np.array([1.0, p0, p1, 0.0], dtype=dtype)


if numba is not None:
    _JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")
    #: Entries of the frame that :func:`_backward_frame` builds for the parallel backward.
    _FRAME_LEN = 27
    #: Packs the lowest bits of a ``uint64``'s 8 bytes into its top byte (byte ``i`` -> bit ``56 + i``).
    _PACK_BYTES = np.uint64(0x0102040810204080)

    if TORCH_BLAS:  # the Fortran BLAS, every argument by reference (pointers as integers)
        _GEMM_SIGNATURE = types.void(*([types.intp] * 13))
        _sgemm = types.ExternalFunction("sgemm_", _GEMM_SIGNATURE)
        _dgemm = types.ExternalFunction("dgemm_", _GEMM_SIGNATURE)
        _BLAS_JIT = _JIT
    else:  # pragma: no cover - where torch's library exports no BLAS (the wrappers never pass a weight then)
        @njit
        def _sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            raise RuntimeError("torch's BLAS is not available to the kernels")

        _dgemm = _sgemm
        # never cache a kernel compiled against the stub: a later process with the BLAS must not load it
        _BLAS_JIT = dict(_JIT, cache=False)

    @njit(inline="always", error_model="numpy")
    def _gemm_rows(c, a, w, blas, scalars):  # pragma: no cover - compiled
        """``c = beta c + a @ w`` (``[R, N] = [R, K] @ [K, N]``, C-contiguous, one dtype) by torch's BLAS.

        In column-major terms ``c^T = w^T a^T``: ``gemm('N', 'N', N, R, K, 1, w, N, a, K, beta, c, N)`` with
        ``blas`` int32 ``[N, R, K, N, ord('N'), ord('N')]`` (:func:`_gemm_arguments`: the sizes, ``w``'s
        leading dimension and the two operations) and ``scalars`` ``[1, beta]`` in the data's dtype, both owned
        by the caller (they are passed by address and must outlive the call).
        """
        d = blas.ctypes.data
        s = scalars.ctypes.data
        if c.itemsize == 4:
            _sgemm(d + 16, d + 20, d, d + 4, d + 8, s, w.ctypes.data, d + 12, a.ctypes.data, d + 8, s + 4,
                   c.ctypes.data, d)
        else:
            _dgemm(d + 16, d + 20, d, d + 4, d + 8, s, w.ctypes.data, d + 12, a.ctypes.data, d + 8, s + 8,
                   c.ctypes.data, d)

    @njit(inline="always", error_model="numpy")
    def _psi(kind, x, c):  # pragma: no cover - compiled
        """The surrogate derivative ``psi(x)`` for kind 2 (arctan) and 3 (triangle); ``c`` from :func:`_constants`.

        Kind 1, the fast sigmoid, is computed in the kernel as ``gz / (1 + slope |x|)^2``, the operations of
        ``FastSigmoid.grad_input``.
        """
        if kind == 2:  # (alpha/2) / (1 + (pi/2 alpha x)^2)
            u = c[2] * x
            return c[1] / (c[0] + u * u)
        return c[1] * max(c[3], c[0] - abs(x) / c[2])  # gamma * max(0, 1 - |x|/width)

    @njit(inline="always", error_model="numpy")
    def _add_recurrent(x, t, b, rows, delay, ptr, cols, wt, hist):  # pragma: no cover - compiled
        """``x += z_{t-d}[b] @ table`` for row ``b`` at step ``t``: the rows of ``table`` (``wt``) of the neurons
        listed for row ``(t - d)*B + b``, or, before step ``d``, ``hist[t, b]`` (any values) times ``table``."""
        n = x.shape[0]
        if t >= delay:
            m = (t - delay) * rows + b
            for e in range(ptr[m], ptr[m + 1]):
                w = wt[cols[e]]
                for k in range(n):
                    x[k] += w[k]
        else:
            pre = hist[t, b]
            for i in range(pre.shape[0]):
                p = pre[i]
                if p != 0.0:
                    w = wt[i]
                    for k in range(n):
                        x[k] += p * w[k]

    @njit(inline="always", error_model="numpy")
    def _flag_buffer(n):  # pragma: no cover - compiled
        """A zeroed ``uint8`` buffer for the 0/1 flags of ``n`` entries (whole blocks of 64) and its ``uint64``
        view."""
        flags = np.zeros((n + 63) // 64 * 64, np.uint8)
        return flags, flags.view(np.uint64)

    @njit(inline="always", error_model="numpy")
    def _append_flagged(words, cols, count, base):  # pragma: no cover - compiled
        """Append ``base + k`` for every ``k`` whose flag is 1 to ``cols`` from ``count`` on; returns the new count.

        ``words`` is the ``uint64`` view of :func:`_flag_buffer` (one byte, 0 or 1, per entry): per block of 64
        entries, each word's 8 flags are packed into 8 bits with one multiply (little-endian byte order), and
        the set bits are visited with ``trailing_zeros``.  A branch per entry instead (the spikes are rare)
        took 0.72 against 0.27 ms for the spikes of ``[100, 64, 128]`` at 3.7% here.
        """
        for block in range(words.shape[0] // 8):
            mask = np.uint64(0)
            for i in range(8):
                mask |= ((words[block * 8 + i] * _PACK_BYTES) >> np.uint64(56)) << np.uint64(8 * i)
            first = base + block * 64
            while mask != 0:
                cols[count] = first + trailing_zeros(mask)
                count += 1
                mask &= mask - np.uint64(1)
        return count

    @njit(**_JIT)
    def _lif_forward(inp, s0, a, gain, const, reset, v_th, zero_reset, hist, wt, delay,
                     x_out, z_out, v_out, s_last, store_x, store_v, ptr, cols, syn_decay, i0,
                     i_out):  # pragma: no cover - compiled
        """See :func:`lif_forward`; returns the number of spikes, or -1 if ``cols`` is too small (nothing is valid).

        With a synaptic current (``syn_decay`` not empty: CubaLIF, :func:`cuba_forward`) the input and the
        self-projection's product go into ``i_t = syn_decay i_{t-1} + inp_t + z_{t-d} W'^T`` (``i_out``, from
        ``i0``), and the membrane takes ``i_t`` as its input.

        The spikes are appended, as they are computed, to the row-wise event
        list ``(ptr, cols)`` of ``z`` as a ``[T*B, n]`` matrix (row ``t*B + b``).
        The self-projection's product for row ``b`` at step ``t`` adds the rows
        of ``W'^T`` listed for row ``(t - d)*B + b`` (``O(|z| n)`` instead of
        ``O(n^2)``, no scan for nonzeros); the steps before ``delay`` read
        ``hist`` (any values).
        """
        steps, rows, n = inp.shape
        recurrent = wt.shape[0] > 0
        synaptic = syn_decay.shape[0] > 0
        capacity = cols.shape[0]
        s = s0.copy()
        scratch = np.empty(n, inp.dtype)
        flags, words = _flag_buffer(n)
        count = 0
        for t in range(steps):
            if count + rows * n > capacity:
                return -1
            for b in range(rows):
                ptr[t * rows + b] = count  # first, as the end of row t*B + b - 1 (read below when d*B == 1)
                row = inp[t, b]
                x = x_out[t, b] if store_x else scratch  # the pre-reset membrane is computed in place
                if synaptic:
                    cur = i_out[t, b]
                    prev = i_out[t - 1, b] if t > 0 else i0[b]
                    for k in range(n):
                        cur[k] = syn_decay[k] * prev[k] + row[k]
                    if recurrent:
                        _add_recurrent(cur, t, b, rows, delay, ptr, cols, wt, hist)
                    for k in range(n):
                        x[k] = const[k] + cur[k] * gain[k]
                else:
                    for k in range(n):
                        x[k] = const[k] + row[k] * gain[k]
                    if recurrent:
                        _add_recurrent(x, t, b, rows, delay, ptr, cols, wt, hist)
                zr = z_out[t, b]
                sr = s[b]
                # One array written per loop, with selects: LLVM vectorizes such loops (a loop writing several
                # arrays needs more runtime aliasing checks than it emits, and stays scalar: 6x slower here).
                for k in range(n):
                    x[k] = x[k] + a[k] * sr[k]
                for k in range(n):
                    zr[k] = 1.0 if x[k] > 0.0 else 0.0
                if zero_reset:
                    for k in range(n):
                        sr[k] = reset[k] if x[k] > 0.0 else x[k]
                else:
                    for k in range(n):
                        sr[k] = x[k] - reset[k] if x[k] > 0.0 else x[k]
                for k in range(n):
                    flags[k] = x[k] > 0.0
                count = _append_flagged(words, cols, count, 0)
                if store_v:
                    vr = v_out[t, b]
                    for k in range(n):
                        vr[k] = sr[k] + v_th[k]
        ptr[steps * rows] = count
        s_last[:] = s
        return count

    @njit(**_JIT)
    def _alif_forward(drive, v0, adapt0, a, one_minus_a, rho, beta, v_th, v_leak, v_reset, r, zero_reset, hist, wt,
                      bias, delay, x_out, z_out, v_out, ad_out, ptr, cols):  # pragma: no cover - compiled
        """See :func:`alif_forward`; returns the number of spikes, or -1 if ``cols`` is too small.

        The spikes are listed as in :func:`_lif_forward` (row ``t*B + b`` of
        ``z`` as ``[T*B, n]``), and the self-projection's product for a row
        sums the rows of ``W^T`` of the neurons listed ``d`` steps before.
        """
        steps, rows, n = drive.shape
        recurrent = wt.shape[0] > 0
        capacity = cols.shape[0]
        cur = np.empty(n, drive.dtype)
        flags, words = _flag_buffer(n)
        count = 0
        for t in range(steps):
            if count + rows * n > capacity:
                return -1
            for b in range(rows):
                ptr[t * rows + b] = count  # first, as the end of row t*B + b - 1 (read below when d*B == 1)
                row = drive[t, b]
                if recurrent:
                    for k in range(n):
                        cur[k] = 0.0
                    _add_recurrent(cur, t, b, rows, delay, ptr, cols, wt, hist)
                    for k in range(n):  # D_t + (W z_{t-d} + b), the loop's order
                        cur[k] = row[k] + (cur[k] + bias[k])
                else:
                    for k in range(n):
                        cur[k] = row[k]
                v_prev = v_out[t - 1, b] if t > 0 else v0[b]
                ad_prev = ad_out[t - 1, b] if t > 0 else adapt0[b]
                xr = x_out[t, b]
                zr = z_out[t, b]
                vr = v_out[t, b]
                adr = ad_out[t, b]
                # One array written per loop (see _lif_forward); vr holds v1 until the reset.
                for k in range(n):
                    vr[k] = a[k] * v_prev[k] + one_minus_a[k] * (v_leak[k] + r[k] * cur[k])
                for k in range(n):
                    xr[k] = vr[k] - (v_th[k] + beta[k] * ad_prev[k])
                for k in range(n):
                    zr[k] = 1.0 if xr[k] > 0.0 else 0.0
                if zero_reset:
                    for k in range(n):
                        vr[k] = v_reset[k] if xr[k] > 0.0 else vr[k]
                else:
                    for k in range(n):
                        vr[k] = xr[k] if xr[k] > 0.0 else vr[k]
                for k in range(n):
                    adr[k] = rho[k] * ad_prev[k] + zr[k]
                for k in range(n):
                    flags[k] = xr[k] > 0.0
                count = _append_flagged(words, cols, count, 0)
        ptr[steps * rows] = count
        return count

    @njit(inline="always", error_model="numpy")
    def _alif_step(t, x_all, gz, grad_v, grad_ad, a, rho, beta, gain, kind, c, zero_reset, gi_out, g, h, q, gv,
                   gzp):  # pragma: no cover - compiled
        """Step ``t`` of the detached ALIF backward, given ``gz`` = ``dL/dz_t + (dL/dI_{t+d}) W`` ``[B, n]``::

            gv = dL/dv_t + a G_{t+1};   h_t = dL/dA_t + rho h_{t+1} + beta q_{t+1};   gz += h_t
            G_t = gv (1 - z_t | 1) + gz psi(x_t);   q_t = -gz psi(x_t);   dL/dI_t = G_t gain

        ``g``, ``h`` and ``q`` hold step ``t+1``'s values on entry (zeros after
        the last step) and step ``t``'s on exit; the spikes are ``x > 0``.
        """
        rows, n = gz.shape
        has_v = grad_v.shape[0] > 0
        has_ad = grad_ad.shape[0] > 0
        c0, c1 = c[0], c[1]
        for b in range(rows):  # one array written per loop (see _lif_forward); h and q are read before written
            xr = x_all[t, b]
            gzr = gz[b]
            gr = g[b]
            hr = h[b]
            qr = q[b]
            gir = gi_out[t, b]
            for k in range(n):
                gv[k] = a[k] * gr[k]
            if has_v:
                gvd = grad_v[t, b]
                for k in range(n):
                    gv[k] = gvd[k] + gv[k]
            if has_ad:  # the loop's order: dL/dA + rho h + beta q
                gad = grad_ad[t, b]
                for k in range(n):
                    hr[k] = (gad[k] + rho[k] * hr[k]) + beta[k] * qr[k]
            else:
                for k in range(n):
                    hr[k] = rho[k] * hr[k] + beta[k] * qr[k]
            if kind == 1:  # the loop's FastSigmoid.derivative: 1 / (1 + slope |x|)^2
                for k in range(n):
                    d = c0 + abs(xr[k]) * c1
                    gzp[k] = (gzr[k] + hr[k]) * (c0 / (d * d))
            else:
                for k in range(n):
                    gzp[k] = (gzr[k] + hr[k]) * _psi(kind, xr[k], c)
            for k in range(n):
                qr[k] = -gzp[k]
            if zero_reset:
                for k in range(n):
                    gv[k] = gv[k] - gv[k] if xr[k] > 0.0 else gv[k]  # gv*(1 - z): exactly 0 at a spike
            for k in range(n):
                gr[k] = gv[k] + gzp[k]
            for k in range(n):
                gir[k] = gr[k] * gain[k]

    @njit(**_JIT)
    def _alif_backward_one(t, x_all, gz, grad_v, grad_ad, a, rho, beta, gain, kind, c, zero_reset, gi_out, g, h,
                           q):  # pragma: no cover - compiled
        """Step ``t`` of :func:`_alif_backward` (the caller computed ``gz``, with the self-projection term)."""
        gv = np.empty(gz.shape[1], x_all.dtype)
        gzp = np.empty(gz.shape[1], x_all.dtype)
        _alif_step(t, x_all, gz, grad_v, grad_ad, a, rho, beta, gain, kind, c, zero_reset, gi_out, g, h, q, gv, gzp)

    @njit(**_BLAS_JIT)
    def _alif_backward(x_all, grad_z, grad_v, grad_ad, a, rho, beta, gain, kind, c, zero_reset, gi_out, g, h, q,
                       weight, delay, blas, scalars):  # pragma: no cover - compiled
        """All steps of the detached ALIF backward; the self-projection's term as in :func:`_lif_backward`."""
        steps, rows, n = x_all.shape
        zeros = np.zeros((rows, n), x_all.dtype)
        gz = np.empty((rows, n), x_all.dtype)
        gv = np.empty(n, x_all.dtype)
        gzp = np.empty(n, x_all.dtype)
        has_gz = grad_z.shape[0] > 0
        recurrent = weight.shape[0] > 0
        for t in range(steps - 1, -1, -1):
            gzt = grad_z[t] if has_gz else zeros
            if recurrent and t + delay < steps:
                if has_gz:
                    gz[:] = gzt
                _gemm_rows(gz, gi_out[t + delay], weight, blas, scalars)
                gzt = gz
            _alif_step(t, x_all, gzt, grad_v, grad_ad, a, rho, beta, gain, kind, c, zero_reset, gi_out, g, h, q, gv,
                       gzp)

    @njit(inline="always", error_model="numpy")
    def _backward_step(t, x_all, gz, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g, g_out, store_g,
                       gv, syn, lo, hi):  # pragma: no cover - compiled
        """Step ``t`` of the backward for rows ``lo..hi-1``, given ``gz`` = the total ``dL/dz_t`` ``[B, n]``::

            gv = (dL/dv_t + a G_{t+1}) (1 - z_t | 1);   G_t = gz psi(x_t) + gv;   dL/dI_t = G_t gain

        ``g`` holds ``G_{t+1}`` on entry and ``G_t`` on exit; the spikes are
        recomputed as ``x > 0``.  ``syn`` is ``(syn_decay, syn_gain, h, grad_i,
        i_from)`` (:func:`_membrane_backward`; empty arrays without a synaptic
        current).  With one (CubaLIF) the membrane's input is ``i_t`` and
        ``H_t = dL/di_t = G_t gain + b H_{t+1} (+ dL/di_t direct)`` (``h`` holds
        ``H_{t+1}``, then ``H_t``; ``grad_i`` covers steps ``i_from..T-1``), and
        ``dL/dI_t = H_t g_syn``.
        """
        rows, n = gz.shape
        direct = t >= v_from
        c0, c1 = c[0], c[1]
        syn_decay, syn_gain, h, grad_i, i_from = syn
        synaptic = syn_decay.shape[0] > 0
        for b in range(lo, hi):  # one array written per loop (see _lif_forward)
            xr = x_all[t, b]
            gir = gi_out[t, b]
            gr = g[b]
            gzr = gz[b]
            for k in range(n):
                gv[k] = a[k] * gr[k]
            if direct:
                gvr = grad_v[t - v_from, b]
                for k in range(n):
                    gv[k] += gvr[k]
            if zero_reset:
                for k in range(n):  # gv - gv*z with z = 1: exactly 0 (NaN and inf propagate as in the loop)
                    gv[k] = gv[k] - gv[k] if xr[k] > 0.0 else gv[k]
            if kind == 1:  # FastSigmoid.grad_input's operations: gz / (1 + slope |x|)^2
                for k in range(n):
                    d = c0 + abs(xr[k]) * c1
                    gr[k] = gzr[k] / (d * d) + gv[k]
            else:
                for k in range(n):
                    gr[k] = gzr[k] * _psi(kind, xr[k], c) + gv[k]
            if synaptic:
                hr = h[b]
                for k in range(n):
                    hr[k] = gr[k] * gain[k] + syn_decay[k] * hr[k]
                if t >= i_from:
                    gir_direct = grad_i[t - i_from, b]
                    for k in range(n):
                        hr[k] += gir_direct[k]
                for k in range(n):
                    gir[k] = hr[k] * syn_gain[k]
            else:
                for k in range(n):
                    gir[k] = gr[k] * gain[k]
            if store_g:
                g_out[t, b] = gr

    @njit(inline="always", error_model="numpy")
    def _lif_backward_rows(x_all, grad_z, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g_out, store_g,
                           g, weight, delay, blas, scalars, syn, lo, hi):  # pragma: no cover - compiled
        """All steps of the backward for rows ``lo..hi-1`` (independent of the other rows): ``gz_t = dL/dz_t``
        (zero if ``grad_z`` is empty) plus, with a self-projection (``weight`` not empty), ``(dL/dI_{t+d}) W``
        by one BLAS GEMM of these rows per step (:func:`_gemm_rows`, ``blas`` for ``hi - lo`` rows,
        ``scalars[1]`` = 1 with ``grad_z``, else 0)."""
        steps, rows, n = x_all.shape
        zeros = np.zeros((rows, n), x_all.dtype)
        gz = np.empty((rows, n), x_all.dtype)
        gv = np.empty(n, x_all.dtype)
        has_gz = grad_z.shape[0] > 0
        recurrent = weight.shape[0] > 0
        g[lo:hi] = 0.0
        syn[2][lo:hi] = 0.0  # H after the last step (an empty array without a synaptic current)
        for t in range(steps - 1, -1, -1):
            gzt = grad_z[t] if has_gz else zeros
            if recurrent and t + delay < steps:
                if has_gz:
                    gz[lo:hi] = gzt[lo:hi]
                _gemm_rows(gz[lo:hi], gi_out[t + delay, lo:hi], weight, blas, scalars)
                gzt = gz
            _backward_step(t, x_all, gzt, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g, g_out, store_g,
                           gv, syn, lo, hi)

    @njit(**_BLAS_JIT)
    def _lif_backward(x_all, grad_z, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g_out, store_g,
                      g, weight, delay, blas, scalars, syn):  # pragma: no cover - compiled
        """All steps of the backward, all rows, on the calling thread (:func:`_lif_backward_rows`)."""
        _lif_backward_rows(x_all, grad_z, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g_out, store_g, g,
                           weight, delay, blas, scalars, syn, 0, x_all.shape[1])

    if PARALLEL:
        _omp_thread = types.ExternalFunction("omp_get_thread_num", types.int32())
        _omp_threads = types.ExternalFunction("omp_get_num_threads", types.int32())

        @intrinsic
        def _pointer_at(typingctx, address, like):  # pragma: no cover - compiled
            """A pointer to ``like``'s type at an integer address (the frame of :func:`_backward_frame`)."""
            pointer = types.CPointer(like)

            def codegen(context, builder, signature, args):
                return builder.inttoptr(args[0], context.get_value_type(pointer))
            return pointer(types.int64, like), codegen

        @njit(inline="always", error_model="numpy")
        def _backward_share(f, x_all, grad_z, grad_v, a, gain, c, gi_out, g_out, g, weight, syn_decay, syn_gain, h,
                            grad_i, scalars):  # pragma: no cover - compiled
            """This thread's share of the rows (``B*i/N .. B*(i+1)/N`` for thread ``i`` of ``N``) through
            :func:`_lif_backward_rows`; ``f`` is the frame's ``int64`` entries (see :func:`_backward_frame`)."""
            steps, rows, n = f[0], f[1], f[2]
            team = _omp_threads()
            me = _omp_thread()
            lo = rows * me // team
            hi = rows * (me + 1) // team
            blas = np.empty(6, np.int32)  # _gemm_arguments for this thread's rows
            blas[0] = n
            blas[1] = hi - lo
            blas[2] = n
            blas[3] = n
            blas[4] = 78  # 'N'
            blas[5] = 78
            syn = (syn_decay, syn_gain, h, grad_i, steps - f[5])
            _lif_backward_rows(x_all, grad_z, grad_v, steps - f[4], a, gain, f[6], c, f[7] != 0, gi_out, g_out,
                               f[8] != 0, g, weight, f[9], blas, scalars, syn, lo, hi)
            return blas[0]  # blas is read after the GEMMs that took its address

        def _make_backward_body(scalar: Any) -> Any:
            """The body of the parallel region of :func:`_membrane_backward` for the float type ``scalar``
            (``np.float32`` or ``np.float64``): the frame's arrays, then this thread's share of the rows."""
            def body(frame):  # pragma: no cover - compiled (by _backward_body, on first use)
                f = carray(frame, (_FRAME_LEN,))
                steps, rows, n, ns = f[0], f[1], f[2], f[11]
                like = scalar(0)
                scalars = np.empty(2, scalar)
                scalars[0] = 1.0
                scalars[1] = f[12]
                _backward_share(
                    f, carray(_pointer_at(f[13], like), (steps, rows, n)),
                    carray(_pointer_at(f[14], like), (f[3], rows, n)),
                    carray(_pointer_at(f[15], like), (f[4], rows, n)),
                    carray(_pointer_at(f[16], like), (n,)), carray(_pointer_at(f[17], like), (n,)),
                    carray(_pointer_at(f[18], like), (4,)), carray(_pointer_at(f[19], like), (steps, rows, n)),
                    carray(_pointer_at(f[20], like), (f[8] * steps, rows, n)),
                    carray(_pointer_at(f[21], like), (rows, n)), carray(_pointer_at(f[22], like), (f[10], f[10])),
                    carray(_pointer_at(f[23], like), (ns,)), carray(_pointer_at(f[24], like), (ns,)),
                    carray(_pointer_at(f[25], like), (rows if ns else 0, n)),
                    carray(_pointer_at(f[26], like), (f[5], rows, n)), scalars)
                scalars[0] = 1.0  # read after the GEMMs that took its address
            return body

        _BACKWARD_BODIES = {np.dtype(np.float32): _make_backward_body(np.float32),
                            np.dtype(np.float64): _make_backward_body(np.float64)}
        _COMPILED_BODIES: dict[np.dtype, Any] = {}

        def _backward_body(dtype: np.dtype) -> int:
            """The address of the compiled parallel-region body for ``dtype``, compiled (or loaded from numba's
            cache) on first use: a ``cfunc`` compiles when it is created, so creating it at import would make
            every import of the backend compile it."""
            body = _COMPILED_BODIES.get(dtype)
            if body is None:
                body = cfunc(types.void(types.CPointer(types.int64)), cache=True, nogil=True, boundscheck=False,
                             error_model="numpy")(_BACKWARD_BODIES[dtype])
                _COMPILED_BODIES[dtype] = body
            return body.address

    @njit(**_JIT)
    def _lif_backward_one(t, x_all, gz, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g_out, store_g,
                          g, gv, syn):  # pragma: no cover - compiled
        """Step ``t`` of the backward (the caller computed ``gz``, with the self-projection term, by a GEMM)."""
        _backward_step(t, x_all, gz, grad_v, v_from, a, gain, kind, c, zero_reset, gi_out, g, g_out, store_g, gv,
                       syn, 0, gz.shape[0])

    @njit(**_JIT)
    def _row_events(x, ptr, cols, vals):  # pragma: no cover - compiled
        """The nonzero entries of ``x`` ``[M, K]`` row by row; returns ``(count, all exactly 1)``.

        Per row, one vectorized pass writes a byte flag per entry (``x != 0``:
        ``-0.0`` is not an event, ``NaN`` is one, as in ``torch.nonzero``), and
        :func:`_append_flagged` lists the flagged columns; then their values
        are gathered.  Measured here (2026-11-23) on ``[6400, 700]`` at 3%:
        2.1 ms, against 3.4 ms for skipping all-zero blocks of 8 entries and
        compacting the others without branches, and 5.1 ms through a table of
        8-bit masks.
        """
        rows, width = x.shape
        capacity = cols.shape[0]
        flags, words = _flag_buffer(width)
        count = 0
        ones = True
        for m in range(rows):
            ptr[m] = count
            xr = x[m]
            if count + width > capacity:  # the row might not fit: the caller retries with room for every entry
                return -1, ones
            for k in range(width):
                flags[k] = xr[k] != 0.0
            start = count
            count = _append_flagged(words, cols, count, 0)
            for e in range(start, count):
                v = xr[cols[e]]
                vals[e] = v
                ones &= v == 1.0
        ptr[rows] = count
        return count, ones

    @njit(**_JIT)
    def _by_column(ptr, cols, vals, has_vals, col_ptr, rows_out, vals_out):  # pragma: no cover - compiled
        """Counting sort of row-major events by column (stable: rows ascending within a column)."""
        width = col_ptr.shape[0] - 1
        col_ptr[:] = 0
        for e in range(cols.shape[0]):
            col_ptr[cols[e] + 1] += 1
        for i in range(width):
            col_ptr[i + 1] += col_ptr[i]
        pos = col_ptr[:width].copy()
        for m in range(ptr.shape[0] - 1):
            for e in range(ptr[m], ptr[m + 1]):
                i = cols[e]
                rows_out[pos[i]] = m
                if has_vals:
                    vals_out[pos[i]] = vals[e]
                pos[i] += 1

    @njit(**_JIT)
    def _linear_forward(u, y0, k, y_out):  # pragma: no cover - compiled
        """``y_t = u_t + k y_{t-1}`` (``k`` ``[B, n]``); one array written per loop (see :func:`_lif_forward`)."""
        steps, batch, n = u.shape
        for b in range(batch):
            kb = k[b]
            for t in range(steps):
                ur = u[t, b]
                yr = y_out[t, b]
                prev = y_out[t - 1, b] if t > 0 else y0[b]
                for j in range(n):
                    yr[j] = ur[j] + kb[j] * prev[j]

    @njit(**_JIT)
    def _linear_backward(grad_y, k, g_out):  # pragma: no cover - compiled
        """``g_t = dL/dy_t + k g_{t+1}`` (zero after the last step), backwards in time."""
        steps, batch, n = grad_y.shape
        zeros = np.zeros(n, grad_y.dtype)
        for b in range(batch):
            kb = k[b]
            for t in range(steps - 1, -1, -1):
                gr = grad_y[t, b]
                out = g_out[t, b]
                nxt = g_out[t + 1, b] if t + 1 < steps else zeros
                for j in range(n):
                    out[j] = gr[j] + kb[j] * nxt[j]


#: Spike capacity that :func:`lif_forward` allocated last per ``(T, B, n)`` (twice the count it found), so the next
#: call of the same shape allocates its event list for about what it needs.
_SPIKE_CAPACITY: dict[tuple[int, int, int], int] = {}


def lif_forward(inp: Tensor, v0: Tensor, a: np.ndarray, gain: np.ndarray, const: np.ndarray, reset: np.ndarray,
                v_th: np.ndarray, zero_reset: bool, hist: Optional[Tensor], weight_t: Optional[Tensor], delay: int,
                store_x: bool, store_v: bool
                ) -> tuple[Optional[Tensor], Tensor, Optional[Tensor], Tensor, tuple[Tensor, Tensor]]:
    """The LIF recurrence of :class:`.scan.LIFScan` over all steps, on the shifted membrane ``s = v - v_th``::

        x_t = (const + I_t*gain) + z_{t-d} W'^T + a*s_{t-1};   z_t = H(x_t);
        s_t = reset if z_t else x_t  (zero reset; ``reset`` = v_reset - v_th) | x_t - z_t*reset  (``reset`` = v_th)

    ``inp`` ``[T, B, n]`` is ``I`` (drive plus bias), ``v0`` ``[B, n]``; ``a``, ``gain`` = (1-a) r, ``const`` =
    (1-a)(v_leak - v_th), ``reset`` and ``v_th`` are ``[n]`` arrays; ``weight_t`` is ``W'^T`` ``[n, n]`` (``W' =
    diag(gain) W``) with ``hist`` ``[d, B, n]`` (the spikes before step 0), or both None.  Returns ``(x or None,
    z, v or None, v_T [1, B, n], (ptr, cols))`` with ``v_t = s_t + v_th``; ``x`` and ``v`` are ``[T, B, n]``
    when stored; ``(ptr, cols)`` are the events of ``z`` as a ``[T*B, n]`` matrix, row by row (int64; the
    spikes, listed as they were computed: see :class:`.events.RowEvents`).
    """
    return _membrane_forward(inp, v0, a, gain, const, reset, v_th, zero_reset, hist, weight_t, delay, store_x,
                             store_v, None)


def cuba_forward(inp: Tensor, i0: Tensor, v0: Tensor, syn_decay: np.ndarray, a: np.ndarray, gain: np.ndarray,
                 const: np.ndarray, reset: np.ndarray, v_th: np.ndarray, zero_reset: bool, hist: Optional[Tensor],
                 weight_t: Optional[Tensor], delay: int, store_v: bool
                 ) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor], Tensor, tuple[Tensor, Tensor]]:
    """The CubaLIF recurrence (:class:`.scan_cuba.CubaScan`): a synaptic current, then :func:`lif_forward`'s
    membrane::

        i_t = syn_decay*i_{t-1} + U_t + z_{t-d} W'^T;   x_t = (const + i_t*gain) + a*s_{t-1};   z_t = H(x_t) ...

    ``inp`` is ``U = g_syn (D + b)`` ``[T, B, n]``, ``i0`` ``[B, n]``, ``syn_decay`` ``[n]``; ``weight_t`` is
    ``W'^T`` with ``W' = diag(g_syn) W``.  Returns ``(x, z, i, v or None, v_T [1, B, n], (ptr, cols))``.
    """
    steps, batch, n = inp.shape
    i = torch.empty(steps, batch, n, dtype=inp.dtype)
    x, z, v, v_last, events = _membrane_forward(inp, v0, a, gain, const, reset, v_th, zero_reset, hist, weight_t,
                                                delay, True, store_v, (syn_decay, i0, i))
    assert x is not None
    return x, z, i, v, v_last, events


def _membrane_forward(inp: Tensor, v0: Tensor, a: np.ndarray, gain: np.ndarray, const: np.ndarray,
                      reset: np.ndarray, v_th: np.ndarray, zero_reset: bool, hist: Optional[Tensor],
                      weight_t: Optional[Tensor], delay: int, store_x: bool, store_v: bool,
                      synapse: Optional[tuple[np.ndarray, Tensor, Tensor]]) -> tuple:
    """Run :func:`_lif_forward` (``synapse``: ``(syn_decay, i0, i_out)`` for CubaLIF, or None)."""
    steps, batch, n = inp.shape
    dtype = inp.dtype
    inp_np = _np(inp)
    z = torch.empty(steps, batch, n, dtype=dtype)
    x = torch.empty(steps, batch, n, dtype=dtype) if store_x else torch.empty(0, 0, 0, dtype=dtype)
    v = torch.empty(steps, batch, n, dtype=dtype) if store_v else torch.empty(0, 0, 0, dtype=dtype)
    s_last = torch.empty(batch, n, dtype=dtype)
    s0 = (v0.detach().expand(batch, n) - torch.from_numpy(v_th)).contiguous()
    if weight_t is not None:
        wt_np, hist_np = _np(weight_t), _np(hist)
    else:
        wt_np, hist_np = np.empty((0, n), dtype=inp_np.dtype), np.empty((0, batch, n), dtype=inp_np.dtype)
    if synapse is None:
        syn_decay, i0_np, i_np = (np.empty(0, dtype=inp_np.dtype), np.empty((0, n), dtype=inp_np.dtype),
                                  np.empty((0, 0, n), dtype=inp_np.dtype))
    else:
        syn_decay, i0_np, i_np = synapse[0], _np(synapse[1].expand(batch, n)), synapse[2].numpy()
    events = _listing_spikes((steps, batch, n), lambda ptr, cols: _lif_forward(
        inp_np, s0.numpy(), a, gain, const, reset, v_th, zero_reset, hist_np, wt_np, delay, x.numpy(), z.numpy(),
        v.numpy(), s_last.numpy(), store_x, store_v, ptr, cols, syn_decay, i0_np, i_np))
    v_last = (s_last + torch.from_numpy(v_th)).unsqueeze(0)
    return (x if store_x else None), z, (v if store_v else None), v_last, events


def _listing_spikes(shape: tuple[int, int, int], run: Any) -> tuple[Tensor, Tensor]:
    """Run a forward kernel ``run(ptr, cols) -> count`` that lists its spikes, with a spike list sized from the
    last run of the same ``(T, B, n)`` (twice its count), again with room for every entry if that overflows
    (the kernel returns -1 and the run restarts from scratch).  Returns the events ``(ptr, cols)``."""
    steps, batch, n = shape
    ptr = np.empty(steps * batch + 1, dtype=np.int64)
    full = steps * batch * n
    capacity = min(_SPIKE_CAPACITY.get(shape, full), full)
    while True:
        cols = np.empty(capacity, dtype=np.int64)  # pages are touched only as far as the spikes reach
        count = run(ptr, cols)
        if count >= 0:
            break
        capacity = full
    _SPIKE_CAPACITY[shape] = max(2 * count, batch * n)
    return torch.from_numpy(ptr), torch.from_numpy(cols[:count])


def lif_backward_detached(x_all: Tensor, grad_z: Optional[Tensor], grad_v: Optional[Tensor],
                          a: np.ndarray, gain: np.ndarray, code: tuple[int, float, float], zero_reset: bool,
                          weight: Optional[Tensor], delay: int, store_g: bool
                          ) -> tuple[Optional[Tensor], Tensor, Tensor]:
    """The fused backward of a detached-reset LIF scan (``scan._backward_detached_fused``), compiled::

        gz_t = dL/dz_t + (dL/dI_{t+d}) W;   gv_t = (dL/dv_t + a G_{t+1}) (1 - z_t | 1)
        G_t = gz_t psi(x_t) + gv_t;          dL/dI_t = G_t gain

    ``grad_z`` ``[T, B, n]`` or None (zero); ``grad_v`` ``[T_v, B, n]`` covering the last ``T_v`` steps, or None;
    ``a`` and ``gain`` ``[n]``; ``code`` from :func:`surrogate_code`; ``weight`` the self-projection ``W``
    ``[n, n]`` (unscaled) or None.  Returns ``(G or None, dL/dI, G_0)``: ``G`` ``[T, B, n]`` only with ``store_g``.

    The whole loop is one compiled call.  With a self-projection each step's
    ``(dL/dI_{t+d}) W`` is one GEMM of torch's own BLAS, called from the kernel
    (:data:`TORCH_BLAS`), on torch's threads.  Measured here (2026-11-23, 2
    threads, ``[100, 64, 128]``), 100 such GEMMs took 1.8 against 2.1 ms as
    ``torch.mm`` calls, before the Python loop's and the per-step call's
    overhead.  Without torch's BLAS the time loop stays in Python: a torch
    ``addmm`` and one compiled call (:func:`_lif_backward_one`) per step.  (A
    second BLAS, with threads of its own, fought torch's OpenMP threads for the
    cores: several-fold slower.)
    """
    g_all, gi, g, _ = _membrane_backward(x_all, grad_z, grad_v, a, gain, code, zero_reset, weight, delay, store_g,
                                         None)
    return g_all, gi, g


def cuba_backward_detached(x_all: Tensor, grad_z: Optional[Tensor], grad_v: Optional[Tensor],
                           grad_i: Optional[Tensor], syn_decay: np.ndarray, syn_gain: np.ndarray, a: np.ndarray,
                           gain: np.ndarray, code: tuple[int, float, float], zero_reset: bool,
                           weight: Optional[Tensor], delay: int) -> tuple[Tensor, Tensor, Tensor]:
    """The detached-reset CubaLIF backward (:class:`.scan_cuba.CubaScan`): :func:`lif_backward_detached`'s ``G``
    with the synaptic current's adjoint::

        H_t = dL/di_t = G_t gain + syn_decay H_{t+1} (+ dL/di_t direct);   dL/dI_t = H_t g_syn
        gz_t = dL/dz_t + (dL/dI_{t+d}) W

    ``grad_i`` ``[T_i, B, n]`` covers the last ``T_i`` steps (or None).  Returns ``(dL/dI [T, B, n], G_0, H_0)``:
    ``dL/dv0 = a G_0``, ``dL/di0 = syn_decay H_0``.
    """
    _, gi, g, h = _membrane_backward(x_all, grad_z, grad_v, a, gain, code, zero_reset, weight, delay, False,
                                     (syn_decay, syn_gain, grad_i))
    return gi, g, h


def _membrane_backward(x_all: Tensor, grad_z: Optional[Tensor], grad_v: Optional[Tensor], a: np.ndarray,
                       gain: np.ndarray, code: tuple[int, float, float], zero_reset: bool, weight: Optional[Tensor],
                       delay: int, store_g: bool, synapse: Optional[tuple[np.ndarray, np.ndarray, Optional[Tensor]]]
                       ) -> tuple[Optional[Tensor], Tensor, Tensor, Optional[Tensor]]:
    """Run :func:`_lif_backward` (or, without torch's BLAS and with a self-projection, one compiled call per step
    beside a torch GEMM); ``synapse``: ``(syn_decay, syn_gain, grad_i or None)`` for CubaLIF, or None.
    Returns ``(G or None, dL/dI, G_0, H_0 or None)``."""
    steps, batch, n = x_all.shape
    dtype = x_all.dtype
    np_dtype = a.dtype
    gi = torch.empty(steps, batch, n, dtype=dtype)
    g_all = torch.empty(steps, batch, n, dtype=dtype) if store_g else torch.empty(0, 0, 0, dtype=dtype)
    g = torch.empty(batch, n, dtype=dtype)  # G_{t+1}, then G_t; G_0 at the end
    empty = np.empty((0, batch, n), dtype=np_dtype)
    gz_np = _np(grad_z) if grad_z is not None else empty
    gv_np = _np(grad_v) if grad_v is not None else empty
    v_from = steps - gv_np.shape[0]
    consts = _constants(code, np_dtype)
    x_np, gi_np, g_all_np, g_np = _np(x_all), gi.numpy(), g_all.numpy(), g.numpy()
    h = None
    if synapse is None:
        syn = (np.empty(0, dtype=np_dtype), np.empty(0, dtype=np_dtype), np.empty((0, n), dtype=np_dtype), empty, steps)
    else:
        h = torch.empty(batch, n, dtype=dtype)
        gi_direct = _np(synapse[2]) if synapse[2] is not None else empty
        syn = (synapse[0], synapse[1], h.numpy(), gi_direct, steps - gi_direct.shape[0])
    if weight is None or TORCH_BLAS:
        w_np = _np(weight) if weight is not None else np.empty((0, 0), dtype=np_dtype)
        threads = min(torch.get_num_threads(), batch)
        if PARALLEL and threads > 1:
            frame = _backward_frame(x_np, gz_np, gv_np, syn[3], a, gain, consts, gi_np, g_all_np, g_np, w_np,
                                    syn[0], syn[1], syn[2], code[0], zero_reset, store_g, delay, grad_z is not None)
            _GOMP_PARALLEL(_backward_body(np.dtype(np_dtype)), frame.ctypes.data, threads, 0)
            return (g_all if store_g else None), gi, g, h
        blas, scalars = _gemm_arguments(batch, n, n, grad_z is not None, np_dtype)
        _lif_backward(x_np, gz_np, gv_np, v_from, a, gain, code[0], consts, zero_reset, gi_np, g_all_np, store_g,
                      g_np, w_np, delay, blas, scalars, syn)
        return (g_all if store_g else None), gi, g, h
    g.zero_()
    syn[2][:] = 0.0
    gz = torch.empty(batch, n, dtype=dtype)
    gz_np = gz.numpy()
    gv_tmp = np.empty(n, dtype=np_dtype)
    _per_step_backward(gz, grad_z, gi, weight, delay, lambda t: _lif_backward_one(
        t, x_np, gz_np, gv_np, v_from, a, gain, code[0], consts, zero_reset, gi_np, g_all_np, store_g, g_np, gv_tmp,
        syn))
    return (g_all if store_g else None), gi, g, h


def _per_step_backward(gz: Tensor, grad_z: Optional[Tensor], gi: Tensor, weight: Tensor, delay: int,
                       step: Any) -> None:
    """The backward's time loop in Python, where torch's BLAS is not available to the kernels: per step, from
    the last, ``gz = dL/dz_t + (dL/dI_{t+d}) W`` by a torch GEMM (into ``gz`` ``[B, n]``; ``dL/dz_t`` alone,
    or zero, before the self-projection's term exists), then ``step(t)``, one compiled call that reads ``gz``
    and writes ``dL/dI_t`` into ``gi``."""
    steps = gi.shape[0]
    w = weight.detach()
    grad_z_rows = grad_z.detach().unbind(0) if grad_z is not None else None
    gi_rows = gi.unbind(0)
    for t in range(steps - 1, -1, -1):
        if t + delay < steps:
            if grad_z_rows is not None:
                torch.addmm(grad_z_rows[t], gi_rows[t + delay], w, out=gz)
            else:
                torch.mm(gi_rows[t + delay], w, out=gz)
        elif grad_z_rows is not None:
            gz.copy_(grad_z_rows[t])
        else:
            gz.zero_()
        step(t)


def _backward_frame(x: np.ndarray, grad_z: np.ndarray, grad_v: np.ndarray, grad_i: np.ndarray, a: np.ndarray,
                    gain: np.ndarray, consts: np.ndarray, gi: np.ndarray, g_all: np.ndarray, g: np.ndarray,
                    weight: np.ndarray, syn_decay: np.ndarray, syn_gain: np.ndarray, h: np.ndarray, kind: int,
                    zero_reset: bool, store_g: bool, delay: int, accumulate: bool) -> np.ndarray:
    """The ``int64`` frame that the parallel backward's body reads: 13 sizes and flags, then the addresses of 14
    C-contiguous arrays (all of the data's dtype; the caller keeps them alive through the parallel region)::

        steps, rows, n, T_gz, T_gv, T_gi, kind, zero_reset, store_g, delay, n_w, n_syn, beta,
        x, grad_z, grad_v, a, gain, consts, dL/dI, G (all steps), G, W, syn_decay, syn_gain, H, grad_i
    """
    steps, rows, n = x.shape
    arrays = (x, grad_z, grad_v, a, gain, consts, gi, g_all, g, weight, syn_decay, syn_gain, h, grad_i)
    assert all(arr.flags.c_contiguous and arr.dtype == x.dtype for arr in arrays)
    head = [steps, rows, n, grad_z.shape[0], grad_v.shape[0], grad_i.shape[0], kind, int(zero_reset),
            int(store_g), delay, weight.shape[0], syn_decay.shape[0], int(accumulate)]
    return np.array(head + [arr.ctypes.data for arr in arrays], dtype=np.int64)


def _gemm_arguments(rows: int, k: int, cols: int, accumulate: bool, dtype: np.dtype
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The ``blas`` and ``scalars`` arrays of :func:`_gemm_rows` for ``[rows, cols] (+)= [rows, k] @ [k, cols]``."""
    return (np.array([cols, rows, k, cols, ord("N"), ord("N")], dtype=np.int32),
            np.array([1.0, 1.0 if accumulate else 0.0], dtype=dtype))


def alif_forward(drive: Tensor, v0: Tensor, adapt0: Tensor, params: dict[str, np.ndarray], zero_reset: bool,
                 hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor], delay: int
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """The ALIF recurrence of :class:`.scan.ALIFScan` over all steps (``A``: the adaptation)::

        I_t = D_t + (W z_{t-d} + b);   v1_t = a v_{t-1} + (1-a)(v_leak + r I_t);   x_t = v1_t - (v_th + beta A_{t-1})
        z_t = H(x_t);   v_t = v_reset | x_t if z_t else v1_t;   A_t = rho A_{t-1} + z_t

    ``params``: ``[n]`` arrays ``a``, ``one_minus_a``, ``rho``, ``beta``, ``v_th``, ``v_leak``, ``v_reset``,
    ``r``; ``weight`` ``W`` ``[n, n]`` with ``hist`` ``[d, B, n]`` and ``bias`` (or zeros), or None.  Returns
    ``(x, z, v, A, (ptr, cols))``, each ``[T, B, n]``, with the spikes' row-wise events as :func:`lif_forward`.
    """
    steps, batch, n = drive.shape
    dtype = drive.dtype
    drive_np = _np(drive)
    x, z, v, ad = (torch.empty(steps, batch, n, dtype=dtype) for _ in range(4))
    v0_np = _np(v0.detach().expand(batch, n))
    ad0_np = _np(adapt0.detach().expand(batch, n))
    if weight is not None:
        wt_np, hist_np = _np(weight.detach().t()), _np(hist)
        bias_np = _np(bias) if bias is not None else np.zeros(n, dtype=drive_np.dtype)
    else:
        wt_np, hist_np = np.empty((0, n), dtype=drive_np.dtype), np.empty((0, batch, n), dtype=drive_np.dtype)
        bias_np = np.zeros(n, dtype=drive_np.dtype)
    p = params
    events = _listing_spikes((steps, batch, n), lambda ptr, cols: _alif_forward(
        drive_np, v0_np, ad0_np, p["a"], p["one_minus_a"], p["rho"], p["beta"], p["v_th"], p["v_leak"],
        p["v_reset"], p["r"], zero_reset, hist_np, wt_np, bias_np, delay, x.numpy(), z.numpy(), v.numpy(),
        ad.numpy(), ptr, cols))
    return x, z, v, ad, events


def alif_backward_detached(x_all: Tensor, grad_z: Optional[Tensor], grad_v: Optional[Tensor],
                           grad_ad: Optional[Tensor], params: dict[str, np.ndarray], code: tuple[int, float, float],
                           zero_reset: bool, weight: Optional[Tensor], delay: int
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The detached-reset ALIF backward (:meth:`.scan.ALIFScan.backward`'s loop), compiled.

    One compiled call (:func:`_alif_backward`), with the self-projection's
    ``(dL/dI_{t+d}) W`` by torch's BLAS as in :func:`lif_backward_detached`;
    without torch's BLAS, with a self-projection, a torch ``addmm`` and one
    compiled call (:func:`_alif_backward_one`) per step.  ``params``: ``[n]``
    arrays ``a``, ``rho``, ``beta``, ``gain`` = (1-a) r.  Returns ``(dL/dI
    [T, B, n], G_0, h_0, q_0)`` (each ``[B, n]`` but the first): ``dL/dv0 = a
    G_0`` and ``dL/dA0 = rho h_0 + beta q_0``.
    """
    steps, batch, n = x_all.shape
    dtype = x_all.dtype
    np_dtype = params["a"].dtype
    gi = torch.empty(steps, batch, n, dtype=dtype)
    g, h, q = (torch.zeros(batch, n, dtype=dtype) for _ in range(3))
    empty = np.empty((0, batch, n), dtype=np_dtype)
    gv_np = _np(grad_v) if grad_v is not None else empty
    gad_np = _np(grad_ad) if grad_ad is not None else empty
    x_np, gi_np, g_np, h_np, q_np = _np(x_all), gi.numpy(), g.numpy(), h.numpy(), q.numpy()
    consts = _constants(code, np_dtype)
    neuron = (params["a"], params["rho"], params["beta"], params["gain"], code[0], consts, zero_reset)
    if weight is None or TORCH_BLAS:
        w_np = _np(weight) if weight is not None else np.empty((0, 0), dtype=np_dtype)
        blas, scalars = _gemm_arguments(batch, n, n, grad_z is not None, np_dtype)
        gz_np = _np(grad_z) if grad_z is not None else empty
        _alif_backward(x_np, gz_np, gv_np, gad_np, *neuron, gi_np, g_np, h_np, q_np, w_np, delay, blas, scalars)
        return gi, g, h, q
    gz = torch.empty(batch, n, dtype=dtype)
    gz_np = gz.numpy()
    _per_step_backward(gz, grad_z, gi, weight, delay, lambda t: _alif_backward_one(
        t, x_np, gz_np, gv_np, gad_np, *neuron, gi_np, g_np, h_np, q_np))
    return gi, g, h, q


#: Event capacity that :func:`row_events` allocated last per input shape (twice the count it found), so the next
#: call of the same shape allocates a few MB instead of room for every entry (tens of MB mapped and unmapped per
#: call, ~0.2 ms each here).
_EVENT_CAPACITY: dict[tuple[int, int], int] = {}


def row_events(x2d: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """The nonzero entries of ``x2d`` ``[M, K]`` (a contiguous CPU float32/float64 tensor) in one pass.

    Returns ``(ptr [M+1], cols [|E|], vals [|E|] or None)`` (int64 indices):
    row ``m``'s events are ``cols[ptr[m]:ptr[m+1]]``, ascending, with values
    ``vals`` (None when every event is exactly 1, as spikes are).  The index
    buffers are sized from the last call of the same shape (twice its count);
    when they would overflow, the pass is repeated with room for every entry.
    """
    x_np = _np(x2d)
    rows, width = x_np.shape
    ptr = np.empty(rows + 1, dtype=np.int64)
    capacity = min(_EVENT_CAPACITY.get((rows, width), x_np.size), x_np.size)
    while True:
        cols = np.empty(capacity, dtype=np.int64)
        vals = np.empty(capacity, dtype=x_np.dtype)
        count, ones = _row_events(x_np, ptr, cols, vals)
        if count >= 0:
            break
        capacity = x_np.size
    _EVENT_CAPACITY[(rows, width)] = max(2 * count, 8 * width)
    return (torch.from_numpy(ptr), torch.from_numpy(cols[:count]),
            None if ones else torch.from_numpy(vals[:count]))


def by_column(ptr: Tensor, cols: Tensor, vals: Optional[Tensor], width: int
              ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """The events of :func:`row_events` ordered by column: ``(col_ptr [K+1], rows [|E|], vals or None)``.

    A counting sort (``O(|E| + K)``, stable: rows ascending within a column),
    for the weight gradient's sums over each column's events.
    """
    count = cols.shape[0]
    col_ptr = np.empty(width + 1, dtype=np.int64)
    rows = np.empty(count, dtype=np.int64)
    vals_np = vals.numpy() if vals is not None else np.empty(0, dtype=np.float32)
    vals_out = np.empty(count if vals is not None else 0, dtype=vals_np.dtype)
    _by_column(ptr.numpy(), cols.numpy(), vals_np, vals is not None, col_ptr, rows, vals_out)
    return torch.from_numpy(col_ptr), torch.from_numpy(rows), (torch.from_numpy(vals_out) if vals is not None
                                                                 else None)


def linear_forward(u: Tensor, y0: Tensor, k: Tensor) -> Tensor:
    """``y_t = u_t + k*y_{t-1}`` for all steps (``u`` ``[T, B, n]``, ``y0`` and ``k`` broadcast to ``[B, n]``)."""
    steps, batch, n = u.shape
    y = torch.empty(steps, batch, n, dtype=u.dtype)
    _linear_forward(_np(u), _np(y0.detach().expand(batch, n)), _np(k.detach().expand(batch, n)), y.numpy())
    return y


def linear_backward(grad_y: Tensor, k: Tensor) -> Tensor:
    """``g_t = dL/dy_t + k*g_{t+1}`` for all steps, backwards (``k`` broadcast to ``[B, n]``)."""
    steps, batch, n = grad_y.shape
    g = torch.empty(steps, batch, n, dtype=grad_y.dtype)
    _linear_backward(_np(grad_y), _np(k.detach().expand(batch, n)), g.numpy())
    return g
