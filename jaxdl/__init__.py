"""jaxdl: neural networks and LSTMs trained with truncated BPTT, as pure JAX functions."""
__version__ = "0.1.0"
