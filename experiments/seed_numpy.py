"""The NumPy code of the seed example (the 6-example, 3-input toy of the classic NumPy backpropagation
tutorial), as functions: the reference for tests and benchmarks.

One hidden layer of sigmoid units, identity output, E = 1/(2N) sum (yhat - y)^2, full-batch
gradient descent. The bias is folded in as weight row 0 with a fixed input of 1, as in the tutorial.
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def initial_weights(n_in=3, num_hidden=3, n_out=1, seed=1):
    """The tutorial's draw: ``np.random.seed(1)``, then ``2 * random - 1`` for each weight matrix."""
    np.random.seed(seed)
    hidden_weights = 2 * np.random.random((n_in + 1, num_hidden)) - 1
    output_weights = 2 * np.random.random((num_hidden + 1, n_out)) - 1
    return hidden_weights, output_weights


def train(X, y, hidden_weights, output_weights, alpha=0.1, num_iterations=10000):
    """The tutorial's loop; returns the final outputs and the trained weight matrices."""
    hidden_weights, output_weights = hidden_weights.copy(), output_weights.copy()
    for _ in range(num_iterations):
        # forward phase
        input_layer_outputs = np.hstack((np.ones((X.shape[0], 1)), X))
        hidden_layer_outputs = np.hstack(
            (np.ones((X.shape[0], 1)), sigmoid(np.dot(input_layer_outputs, hidden_weights)))
        )
        output_layer_outputs = np.dot(hidden_layer_outputs, output_weights)
        # backward phase
        output_error = output_layer_outputs - y
        hidden_error = (
            hidden_layer_outputs[:, 1:]
            * (1 - hidden_layer_outputs[:, 1:])
            * np.dot(output_error, output_weights.T[:, 1:])
        )
        hidden_pd = input_layer_outputs[:, :, np.newaxis] * hidden_error[:, np.newaxis, :]
        output_pd = hidden_layer_outputs[:, :, np.newaxis] * output_error[:, np.newaxis, :]
        total_hidden_gradient = np.average(hidden_pd, axis=0)
        total_output_gradient = np.average(output_pd, axis=0)
        hidden_weights += -alpha * total_hidden_gradient
        output_weights += -alpha * total_output_gradient
    return output_layer_outputs, hidden_weights, output_weights
