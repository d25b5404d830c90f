"""fbackprop: backpropagation written out in matrix form beside JAX autodiff, checked against it."""

from . import activations, data, losses, optim, results, spectra
from .autodiff import autodiff, forward_mode, numerical_grad, value_and_autodiff
from .backprop import Trace, backprop, backprop_trace, backward, forward, per_example_grads, value_and_backprop
from .check import GradReport, compare, tolerance
from .curvature import fisher_vp, flatten, ggn, ggn_vp, hessian, hvp
from .jacobian import as_matrix, jacobian, jacobian_gram
from .nets import Network, mlp
from .optim import LMResult, gauss_newton, hessian_free, least_squares, levenberg_marquardt, newton
from .second_order import ggn_diag, hessian_blocks, hessian_diag
from .spectra import eigenvalues, hutchinson_diag, hutchinson_trace, lanczos, power_iteration
from .train import Result, init_many, train, train_many

__version__ = "0.1.0"

__all__ = [
    "activations",
    "as_matrix",
    "autodiff",
    "backprop",
    "backprop_trace",
    "backward",
    "compare",
    "data",
    "eigenvalues",
    "fisher_vp",
    "flatten",
    "forward",
    "forward_mode",
    "gauss_newton",
    "ggn",
    "ggn_diag",
    "ggn_vp",
    "GradReport",
    "hessian",
    "hessian_blocks",
    "hessian_diag",
    "hessian_free",
    "hutchinson_diag",
    "hutchinson_trace",
    "hvp",
    "init_many",
    "jacobian",
    "jacobian_gram",
    "lanczos",
    "least_squares",
    "levenberg_marquardt",
    "LMResult",
    "losses",
    "mlp",
    "Network",
    "newton",
    "numerical_grad",
    "optim",
    "per_example_grads",
    "power_iteration",
    "Result",
    "results",
    "spectra",
    "tolerance",
    "Trace",
    "train",
    "train_many",
    "value_and_autodiff",
    "value_and_backprop",
]
