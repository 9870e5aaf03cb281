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
