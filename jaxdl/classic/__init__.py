"""The source text's foundations chapters: perceptron, linear unit, sigmoid networks with
the delta-rule backprop, as pure functions."""
