"""SIGINT / SIGTERM during a job: a request to stop at the next safe point (`STOP`, one per process)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator, Optional

from mstr.errors import Interrupted

log = logging.getLogger(__name__)


class StopSignals:
    """SIGINT and SIGTERM during a job. While a `LastCheckpoint` trains, a signal is a request: the
    current step finishes, `last.ckpt` is saved, and `Interrupted` is raised. Elsewhere (data loading,
    testing), or on a second signal, `Interrupted` is raised at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferring = False
        self.installed = False
        self.last_checkpoint: Optional[str] = None  # the newest last.ckpt of this job
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        if self.deferring and first:
            log.warning("received %s: finishing the current step, then saving last.ckpt (send it again to stop "
                        "at once)", signal.Signals(signum).name)
            return
        raise Interrupted(signum, self.last_checkpoint)

    def claim_sigterm(self) -> None:
        """Take SIGTERM back from Lightning's handler (which would stop mid-validation)."""
        if self.installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle)

    @contextlib.contextmanager
    def active(self) -> Iterator["StopSignals"]:
        """Install the handlers for the duration of one job (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.signum, self.deferring, self.last_checkpoint, self.installed = None, False, None, True
        self._previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self.installed, self.deferring = False, False


STOP = StopSignals()
