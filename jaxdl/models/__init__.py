"""Models as pure functions: LSTM (custom VJP), stacked RNN, Dense, MLP."""
