"""The source text's Keras workflow as pure functions: define (Sequential of layers),
compile (optimizer, loss, metrics), fit, evaluate, predict, predict_classes, with
stateful recurrent layers (LSTM, GRU, SimpleRNN) whose state is passed in and returned."""
from jaxdl.workflow.layers import GRU, LSTM, Activation, Dense, Recurrent, RepeatVector, SimpleRNN
from jaxdl.workflow.model import Compiled, Sequential, TrainState

__all__ = ["LSTM", "GRU", "SimpleRNN", "Recurrent", "Dense", "Activation", "RepeatVector",
           "Sequential", "Compiled", "TrainState"]
