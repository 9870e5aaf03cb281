"""Stop requests: SIGTERM, SIGUSR1, SIGUSR2 and a first Ctrl-C (SIGINT) ask a run to stop
at the next chunk boundary (jaxdl.train.loop runs an epoch in chunks of a few seconds).
The handler only sets a flag (nothing heavy in a handler); the training loop checks it
between chunks, writes a checkpoint (mid-epoch if need be), closes the wandb run and exits
with PREEMPTED_EXIT_CODE (130 for Ctrl-C, as a shell reports it). A relaunch on the same
run dir resumes bit-identical.

A second Ctrl-C aborts at once: the first one puts SIGINT back to the kernel's default
action, so the second ends the process even while it waits inside a compiled chunk. Any
temporary checkpoint directory orbax had begun is removed by the next launch before it
looks for checkpoints (jaxdl.run.checkpoint).

Signals that a cluster scheduler sends before it kills a job: SLURM sends SIGTERM
(and, with `--signal`, SIGUSR1/SIGUSR2) ahead of the time limit or a preemption.
"""
from __future__ import annotations

import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
PREEMPTED_EXIT_CODE = 75   # EX_TEMPFAIL: "try again later"; the run dir holds a checkpoint to resume
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT: what a shell reports for a Ctrl-C


def exit_code_for(signal_name: str) -> int:
    """The exit code of a run stopped by `signal_name` (with a checkpoint)."""
    return INTERRUPTED_EXIT_CODE if signal_name == "SIGINT" else PREEMPTED_EXIT_CODE


class StopFlag:
    """Installs handlers for STOP_SIGNALS (main thread only) and remembers the first
    signal received. `requested` is read by the loop; `restore()` puts back the
    previous handlers."""

    def __init__(self, signals=STOP_SIGNALS):
        self.received: int | None = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return                      # signal handlers can only be set from the main thread
        for s in signals:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)     # a second Ctrl-C: the kernel ends the process
            print("\n[jaxdl] Ctrl-C: stopping after the chunk in flight with a checkpoint; "
                  "press Ctrl-C again to abort at once", file=sys.stderr, flush=True)
        if self.received is None:
            self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def hand_on(self) -> None:
        """Once the run has checkpointed and closed: restore the previous handlers and, if a
        stop signal arrived and the handler before ours was a Python function, call it now.
        Under Hydra's submitit launcher that is submitit's SIGUSR2 handler, which requeues
        the job (`scontrol requeue`, or a local restart) and exits; the requeued job resumes
        from the run dir. Its SystemExit is left to propagate. Python's own Ctrl-C handler
        (KeyboardInterrupt) is not called: the run has already stopped for it."""
        prev = self._previous.get(self.received) if self.received is not None else None
        self.restore()
        if callable(prev) and prev is not signal.default_int_handler:
            prev(self.received, None)
