"""Task registry: name -> builder (and kind). Builders take plain values."""
import inspect
from jaxdl.tasks import addition, classic, forecast, seqclass, synthetic, text

SEQUENCE_TASKS = {
    "echo": synthetic.echo,
    "adding": synthetic.adding,
    "sine": synthetic.sine,
    "textgen": text.textgen,
}

# trained with the define/compile/fit workflow (jaxdl.workflow); name -> run function
WORKFLOW_TASKS = {
    "forecast": forecast.run,
    "seqclass": seqclass.run,
    "addition": addition.run,
}
# run() arguments that come from model/optim/train, not from task.*
WORKFLOW_RUN_ARGS = {"hidden", "epochs", "batch_size", "lr", "seed", "verbose", "checkpoint_dir", "checkpoint_every", "resume",
                     "data_dir"}

# name -> (builder, kind); kind picks the trainer and the models that fit
CLASSIC_TASKS = {
    "and": (classic.and_, "perceptron"),
    "or": (classic.or_, "perceptron"),
    "xor": (classic.xor, "perceptron"),
    "salary": (classic.salary, "linear"),
    "digits": (classic.digits, "classify"),
    "mnist": (classic.mnist, "classify"),
}


def call_task(fn, data_dir: str, **kw):
    """Call a task builder/runner, passing `data_dir` only to those that read shared data."""
    if "data_dir" in inspect.signature(fn).parameters:
        kw["data_dir"] = data_dir
    return fn(**kw)
