"""Errors a run reports to its user with what went wrong and what to do."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""

    def __init__(self, epoch: int, step: int, checkpoint: int | None):
        where = (f"the last good checkpoint (epoch {checkpoint}) is intact"
                 if checkpoint is not None else "no checkpoint had been written yet")
        super().__init__(
            f"loss became NaN/inf at epoch {epoch}, step {step}; training stopped and {where}. "
            "Lower optim.lr or set optim.clip (e.g. optim.clip=1.0), then rerun.")
        self.epoch, self.step = epoch, step


class Preempted(RuntimeError):
    """A stop signal (SIGTERM, SIGUSR1, SIGUSR2, a first Ctrl-C) arrived; the loop finished
    the chunk in flight and wrote its checkpoint (mid-epoch when `update` = (done, of) is
    set). The entry point exits with PREEMPTED_EXIT_CODE (jaxdl.run.signals); a relaunch
    on the same run dir resumes."""

    def __init__(self, epoch: int, signal_name: str, update: tuple[int, int] | None = None):
        where = (f"in epoch {epoch} after update {update[0]} of {update[1]}" if update
                 else f"after epoch {epoch}")
        super().__init__(f"{signal_name} received: stopped {where} with a checkpoint of it; "
                         "relaunch with the same run dir (hydra.run.dir) to resume")
        self.epoch, self.signal_name, self.update = epoch, signal_name, update
