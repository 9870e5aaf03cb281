"""Task registry: name -> (builder, config class, kind). A builder takes its task config
and the run's seed (and what else its kind needs, see `build`) and returns the prepared
data of jaxdl.data.prepared; `kind` says which trainer runs it:

    stream     SeqTask: TBPTT(k1, k2) or an online estimator (jaxdl.train)
    workflow   WorkflowTask: a Keras-style Sequential (jaxdl.workflow), built from model/optim/train
    classify   ArrayTask: the feed-forward classifier (jaxdl.classic.classifier_trainer)
    perceptron, linear: ArrayTask: the source text's learning rules (jaxdl.classic.rule_trainer)
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

from jaxdl.tasks import addition, classic, forecast, marschall, seqclass, synthetic, text


class TaskEntry(NamedTuple):
    build: Callable
    config: type
    kind: str


TASKS = {
    "echo": TaskEntry(synthetic.echo, synthetic.EchoConfig, "stream"),
    "adding": TaskEntry(synthetic.adding, synthetic.AddingConfig, "stream"),
    "sine": TaskEntry(synthetic.sine, synthetic.SineConfig, "stream"),
    "textgen": TaskEntry(text.textgen, text.TextgenConfig, "stream"),
    "marschall_add": TaskEntry(marschall.add, marschall.MarschallAddConfig, "stream"),
    "forecast": TaskEntry(forecast.forecast, forecast.ForecastConfig, "workflow"),
    "seqclass": TaskEntry(seqclass.seqclass, seqclass.SeqclassConfig, "workflow"),
    "addition": TaskEntry(addition.addition, addition.AdditionConfig, "workflow"),
    "and": TaskEntry(classic.truth_task, classic.TruthTableConfig, "perceptron"),
    "or": TaskEntry(classic.truth_task, classic.TruthTableConfig, "perceptron"),
    "xor": TaskEntry(classic.truth_task, classic.TruthTableConfig, "perceptron"),
    "salary": TaskEntry(classic.salary_task, classic.SalaryConfig, "linear"),
    "digits": TaskEntry(classic.digits, classic.DigitsConfig, "classify"),
    "mnist": TaskEntry(classic.mnist, classic.MnistConfig, "classify"),
}


def build(entry: TaskEntry, cfg, seed: int, data_dir: str, model=None, optim=None, train=None):
    """Call a builder with what it takes: (cfg, seed), plus data_dir for those that read
    shared data, plus model/optim/train for the Keras-style tasks."""
    params = inspect.signature(entry.build).parameters
    kw = {"data_dir": data_dir, "model": model, "optim": optim, "train": train}
    return entry.build(cfg, seed, **{k: v for k, v in kw.items() if k in params})
