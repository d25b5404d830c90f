"""Losses with hand-written value, gradient, Hessian and Hessian square root in the network output.

Shapes: ``yhat: (N, n_out)`` is the network output (logits for the two classification losses),
one example per row; ``y`` the targets. A ``Loss`` is written one example (one row) at a time:

- ``value(yhat, y) -> (N,)``                the per-example losses ``l_n``,
- ``grad(yhat, y) -> (N, n_out)``           ``dl_n / dyhat_n``,
- ``hessian(yhat, y) -> (N, n_out, n_out)``  ``H_n = d^2 l_n / dyhat_n^2``,
- ``hvp(yhat, y, v) -> (N, n_out)``         ``H_n v_n`` without forming the matrix,
- ``hessian_sqrt(yhat, y) -> (N, n_out, n_out)``  a factor ``S_n`` with ``H_n = S_n S_n^T`` (the
  factorization BackPACK uses, Dangel, Kunstner & Hennig 2020),
- ``sample(key, yhat) -> (N, n_out)``       targets drawn from the model's predictive distribution,
  the one whose negative log-likelihood ``l`` is: a unit-variance Gaussian around ``yhat``
  (squared error), a categorical of ``softmax(yhat)`` as one-hot rows, independent Bernoullis of
  ``sigmoid(yhat)``. The Monte-Carlo Fisher uses it.

The cost is the batch mean ``C = (1/N) sum_n l_n``, which is ``loss(yhat, y)``; so
``dC/dyhat = grad / N``, which is what the backward pass starts from.

One file per concern: ``base`` (the ``Loss`` type, the target and ``yhat`` checks every loss
shares), ``squared_error``, ``cross_entropy`` and ``binary_cross_entropy`` (each loss's math, its
accepted target forms and its accuracy notes) and ``registry`` (``LOSSES``, ``get``,
``require_hessian_sqrt``).
"""

from .base import Loss
from .binary_cross_entropy import binary_cross_entropy
from .cross_entropy import cross_entropy
from .registry import LOSSES, get
from .squared_error import squared_error

__all__ = ["Loss", "squared_error", "cross_entropy", "binary_cross_entropy", "LOSSES", "get"]
