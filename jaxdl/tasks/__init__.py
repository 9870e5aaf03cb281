"""Task registry: name -> builder. Builders take plain values and return a task
(jaxdl.tasks.base) whose `trainer` field names the trainer that runs it."""
import inspect
from jaxdl.tasks import addition, classic, forecast, seqclass, synthetic, text

SEQUENCE_TASKS = {
    "echo": synthetic.echo,
    "adding": synthetic.adding,
    "sine": synthetic.sine,
    "textgen": text.textgen,
}

# Keras-style Sequential models (jaxdl.workflow); their builders also take the model size,
# learning rate and batch size from model/optim/train
WORKFLOW_TASKS = {
    "forecast": forecast.forecast,
    "seqclass": seqclass.seqclass,
    "addition": addition.addition,
}
# builder arguments that come from model/optim/train (and the entry point), not from task.*
WORKFLOW_RUN_ARGS = {"hidden", "epochs", "batch_size", "lr", "seed", "data_dir"}

# name -> (builder, kind); kind picks the models that fit
CLASSIC_TASKS = {
    "and": (classic.and_, "perceptron"),
    "or": (classic.or_, "perceptron"),
    "xor": (classic.xor, "perceptron"),
    "salary": (classic.salary_task, "linear"),
    "digits": (classic.digits, "classify"),
    "mnist": (classic.mnist, "classify"),
}


def builder(name: str):
    """The builder of task `name`."""
    if name in SEQUENCE_TASKS:
        return SEQUENCE_TASKS[name]
    if name in WORKFLOW_TASKS:
        return WORKFLOW_TASKS[name]
    return CLASSIC_TASKS[name][0]


def call_task(fn, data_dir: str, **kw):
    """Call a task builder with the arguments it takes: `data_dir` only for those that
    read shared data, and only the run arguments (hidden, lr, ...) it names."""
    params = inspect.signature(fn).parameters
    if "data_dir" in params:
        kw["data_dir"] = data_dir
    return fn(**{k: v for k, v in kw.items() if k in params})
