"""Ctrl-C during training: finish the current batch, save a checkpoint, then stop.

:class:`SigintGuard` is the context manager :meth:`Trainer.fit` runs under.
While it is active, the first SIGINT (Ctrl-C) only sets :attr:`SigintGuard.requested`
and prints a notice; the trainer checks the flag at its next safe point (the end
of the current batch), writes a checkpoint and raises
:class:`~ntgraph.errors.TrainingInterrupted`.  A second SIGINT raises
:class:`KeyboardInterrupt` at once, as Python does by default (an atomic write
in progress is then abandoned and its temporary file removed, so the previous
checkpoint stays intact).

The handler is installed only in the main thread (Python delivers signals
there only, and ``signal.signal`` refuses other threads) and only when SIGINT
is not ignored (a background job started by a non-interactive shell ignores
it); the previous handler is restored when the guard exits.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

__all__ = ["SigintGuard"]

NOTICE = (b"\nntgraph: interrupt received, saving a checkpoint after the current batch "
          b"(press Ctrl-C again to abort without saving)\n")


class SigintGuard:
    """Turn the first SIGINT into a request (:attr:`requested`) and the second into ``KeyboardInterrupt``.

    ``enabled=False`` makes the guard a no-op (``requested`` stays False).
    :attr:`installed` tells whether a handler was actually installed.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self.installed = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested:
            # Second Ctrl-C: give the user back the default behaviour and abort now.
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the handler may run in the middle of another write to stderr
        # (a progress bar), and a re-entrant call on a buffered stream raises RuntimeError.
        try:
            os.write(2, NOTICE)
        except OSError:
            pass

    def _restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self._previous)
            self.installed = False

    def __enter__(self) -> "SigintGuard":
        self.requested = False
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN or previous is None:  # ignored, or set by non-Python code: leave it alone
            return self
        self._previous = previous
        signal.signal(signal.SIGINT, self._handler)
        self.installed = True
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._restore()
