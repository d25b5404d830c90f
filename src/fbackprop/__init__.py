"""fbackprop: backpropagation written out in matrix form beside JAX autodiff, and checked against it.

``import fbackprop as fb``. Every derivative exists twice: hand-written, one line per textbook
equation (``fb.backprop``, ``fb.hvp(method="backprop")``, ``fb.hessian_diag``, ``fb.jacobian``), and
from JAX autodiff (``fb.autodiff``, ``fb.hvp(method="autodiff")``, ``fb.hessian``); ``fb.compare``
measures how far two of them are apart. Training: ``fb.train`` and ``fb.train_many`` (first order,
any optax rule), ``fb.levenberg_marquardt``, ``fb.gauss_newton``, ``fb.newton``, ``fb.hessian_free``
and ``fb.least_squares`` (second order).

Networks: ``fb.mlp``, or ``fb.serial`` over the layer kinds of ``fb.layers`` (dense, convolution,
pooling, layer norm, residual blocks, or your own), every pass of each written out.

Submodules: ``layers``, ``activations`` and ``losses`` (with their hand-written derivatives), ``data`` (small
offline data sets), ``spectra`` (Lanczos, power iteration, Hutchinson), ``optim`` (the second-order
methods), ``status`` (the stop codes every iterative method returns), ``streaming`` (data larger
than memory, as chunks: ``fb.Chunks``) and ``results`` (results files). Conventions (batch rows,
``W: (fan_out, fan_in)``, the batch-mean cost) and the map from each equation to the function that
implements it are in the documentation, ``docs/`` (``make docs``).
"""

from . import activations, data, distributed, layers, losses, optim, results, spectra, status, streaming
from .autodiff import autodiff, forward_mode, numerical_grad, value_and_autodiff
from .backprop import (
    Trace,
    backprop,
    backprop_trace,
    backward,
    forward,
    per_example_grads,
    value_and_backprop,
)
from .check import GradReport, compare, tolerance
from .check_layer import LayerReport, check_layer
from .curvature import fisher_vp, flatten, ggn, ggn_vp, hessian, hvp
from .jacobian import as_matrix, jacobian, jacobian_gram
from .kronecker import EKFactors, ekfac_factors, kfac_factors
from .kronecker_products import ekfac_inverse_vp, ekfac_vp, kfac_inverse, kfac_inverse_vp, kfac_vp
from .layers.base import KFactors
from .layers.network import serial
from .nets import Network, mlp
from .optim import (
    EKFACState,
    LMResult,
    ekfac,
    gauss_newton,
    hessian_free,
    kfac,
    least_squares,
    levenberg_marquardt,
    newton,
)
from .second_order import ggn_diag, hessian_blocks, hessian_diag
from .spectra import eigenvalues, hutchinson_diag, hutchinson_trace, lanczos, power_iteration
from .streaming import Chunks
from .train import Result, init_many, train, train_many

__version__ = "0.1.0"

__all__ = [
    "activations",
    "as_matrix",
    "autodiff",
    "backprop",
    "backprop_trace",
    "backward",
    "check_layer",
    "Chunks",
    "compare",
    "data",
    "distributed",
    "eigenvalues",
    "EKFactors",
    "ekfac",
    "EKFACState",
    "ekfac_factors",
    "ekfac_inverse_vp",
    "ekfac_vp",
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
    "kfac",
    "KFactors",
    "kfac_factors",
    "kfac_inverse",
    "kfac_inverse_vp",
    "kfac_vp",
    "layers",
    "LayerReport",
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
    "serial",
    "spectra",
    "status",
    "streaming",
    "tolerance",
    "Trace",
    "train",
    "train_many",
    "value_and_autodiff",
    "value_and_backprop",
]
