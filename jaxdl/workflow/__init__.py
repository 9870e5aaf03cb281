"""The seed's Keras workflow as pure functions: define (Sequential of layers),
compile (optimizer, loss, metrics), fit, evaluate, predict, predict_classes, with
stateful LSTMs whose state is passed in and returned."""
from jaxdl.workflow.layers import LSTM, Activation, Dense, RepeatVector
from jaxdl.workflow.model import Compiled, Sequential, TrainState

__all__ = ["LSTM", "Dense", "Activation", "RepeatVector", "Sequential", "Compiled", "TrainState"]
