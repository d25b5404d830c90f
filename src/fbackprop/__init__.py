"""fbackprop: backpropagation written out in matrix form beside JAX autodiff, checked against it."""

from . import activations, data, losses, results
from .autodiff import autodiff, forward_mode, numerical_grad, value_and_autodiff
from .backprop import Trace, backprop, backprop_trace, backward, forward, per_example_grads, value_and_backprop
from .check import GradReport, compare, tolerance
from .nets import Network, mlp
from .train import Result, init_many, train, train_many

__version__ = "0.1.0"

__all__ = [
    "activations",
    "autodiff",
    "backprop",
    "backprop_trace",
    "backward",
    "compare",
    "data",
    "forward",
    "forward_mode",
    "GradReport",
    "init_many",
    "losses",
    "mlp",
    "Network",
    "numerical_grad",
    "per_example_grads",
    "Result",
    "results",
    "tolerance",
    "Trace",
    "train",
    "train_many",
    "value_and_autodiff",
    "value_and_backprop",
]
