"""What the Keras-style tasks (forecast, seqclass, addition) take from the run's model,
optim and train configs: the recurrent layer of model.name with model.hidden units,
model.layers of them stacked, and the optimizer of optim.*."""
from __future__ import annotations

from jaxdl.config.schema import OptimConfig, RecurrentConfig
from jaxdl.optimizers import make_optimizer

LAYER_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}


def recurrent_layers(model: RecurrentConfig, return_sequences: bool = False) -> list:
    """model.layers recurrent layers of model.hidden units (jaxdl.workflow); all but the
    last return sequences. The LSTM takes model.forget_bias (null: 1.0)."""
    import jaxdl.workflow as wf
    if model.name not in LAYER_CLASSES or not hasattr(wf, LAYER_CLASSES[model.name]):
        raise ValueError(f"model={model.name}: the Keras-style tasks have no {model.name} layer; "
                         f"use model={'|'.join(n for n, c in LAYER_CLASSES.items() if hasattr(wf, c))}")
    cls = getattr(wf, LAYER_CLASSES[model.name])
    kw = {"forget_bias": 1.0 if model.forget_bias is None else model.forget_bias} if model.name == "lstm" else {}
    return [cls(model.hidden, return_sequences=return_sequences or i < model.layers - 1, **kw)
            for i in range(model.layers)]


def optimizer(optim: OptimConfig):
    """The optax optimizer of optim.* (name, lr, clip, momentum, weight_decay)."""
    return make_optimizer(optim.name, optim.lr, optim.clip, optim.momentum, optim.weight_decay)
