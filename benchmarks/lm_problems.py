"""The problems ``bench_lm.py`` runs: fbackprop's Levenberg-Marquardt and the libraries it is compared
with (``lm_entries.py``), all from the same flat initial params, in float64.

Regression (tanh hidden layers, linear output, squared error; SSE = sum of squared residuals):

- ``sine``, 1-10-1 (P = 31) on ``fb.data.sine(200)``;
- ``parity3``, 3-3-1 (P = 16) on ``fb.data.parity(3, coding="bipolar")`` (8 patterns);
- ``peaks``, 2-30-30-1 (P = 1051) on ``fb.data.peaks(30)`` (900 points, fewer residuals than params);
- ``franke``, 2-20-40-1 (P = 941) on Franke's (1979) test function on a 32 x 32 grid of the unit
  square (1024 points, more residuals than params: the dense solver's regime, where ``peaks`` is
  the dual's).

Classification through the generalized Gauss-Newton form (Schraudolph 2002):

- ``moons``, 2-30-30-2 (P = 1082), softmax cross-entropy on two interleaved half circles
  (``fb.data.two_moons(300, noise=0.1)``, 300 points, 2 classes; M = 600 Jacobian rows). fbackprop
  minimises ``E = sum_n CE_n`` with
  ``G = sum_n J_n^T H_n J_n``, ``H_n = diag(p_n) - p_n p_n^T`` on the 2 logits. scipy, optimistix and
  jaxopt minimise a sum of squared residuals only; the same objective is theirs with
  ``r_n = sqrt(2 CE_n)`` (``sum_n r_n^2 / 2 = E``), whose Gauss-Newton matrix ``J_r^T J_r`` (rank
  <= N, one row per example) is NOT the GGN: the libraries take part on the same loss with a
  different curvature model. Every row reports ``sum_n r_n^2 = 2 E`` as its "SSE".

``--quick`` (a smoke run, seconds): parity3, and peaks at toy size (2-8-8-1 on an 8 x 8 grid,
P = 105 > M = 64).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import fbackprop as fb

jax.config.update("jax_enable_x64", True)

TARGET = 1e-3  # time to SSE <= TARGET * SSE(theta0)
BUDGET = {"sine": 500, "parity3": 200, "peaks": 100, "franke": 100, "moons": 100}
PROBLEMS = ("sine", "parity3", "peaks", "franke", "moons")


class Problem(NamedTuple):
    """One benchmark problem.

    Attributes:
        name: its name (``PROBLEMS``).
        net: the ``fb.mlp`` network.
        params: the initial params (``net.init(key(seed))``, float64).
        x: inputs ``(N, n_in)``.
        y: targets ``(N, n_out)`` (regression) or integer labels ``(N,)`` (classification).
        theta0: the initial params flattened, ``(P,)``.
        unravel: ``(P,) ->`` params.
        budget: the long run's trial steps.
        sizes: the layer widths ``[n_in, ..., n_out]``.
        loss: ``"squared_error"`` or ``"cross_entropy"``.
    """

    name: str
    net: fb.Network
    params: tuple
    x: jax.Array
    y: jax.Array
    theta0: jax.Array
    unravel: object
    budget: int
    sizes: tuple = ()
    loss: str = "squared_error"

    @property
    def N(self) -> int:
        """The number of examples."""
        return self.x.shape[0]

    @property
    def M(self) -> int:
        """The rows of fbackprop's Jacobian, ``N n_out`` (what its solvers see)."""
        return self.N * self.net.n_out

    @property
    def P(self) -> int:
        """The number of parameters."""
        return self.theta0.size


def franke(n: int = 32, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Franke's (1979) bivariate test function on an ``n x n`` grid of ``[0, 1]^2``.

    ``f = 3/4 exp(-((9x-2)^2 + (9y-2)^2)/4) + 3/4 exp(-(9x+1)^2/49 - (9y+1)/10)
    + 1/2 exp(-((9x-7)^2 + (9y-3)^2)/4) - 1/5 exp(-(9x-4)^2 - (9y-7)^2)``.

    Args:
        n: grid points per axis (default 32).
        dtype: the arrays' dtype.

    Returns:
        ``(x: (n^2, 2), f: (n^2, 1))``.
    """
    g = np.linspace(0.0, 1.0, n)
    X, Y = (a.ravel() for a in np.meshgrid(g, g))
    f = (
        0.75 * np.exp(-((9 * X - 2) ** 2 + (9 * Y - 2) ** 2) / 4)
        + 0.75 * np.exp(-((9 * X + 1) ** 2) / 49 - (9 * Y + 1) / 10)
        + 0.5 * np.exp(-((9 * X - 7) ** 2 + (9 * Y - 3) ** 2) / 4)
        - 0.2 * np.exp(-((9 * X - 4) ** 2) - (9 * Y - 7) ** 2)
    )
    return np.stack([X, Y], axis=1).astype(dtype), f[:, None].astype(dtype)


def make_problems(quick: bool, seed: int = 0, names=None) -> list[Problem]:
    """The problems, in ``PROBLEMS``' order (``names``: a subset; default all of the mode's).

    Args:
        quick: toy sizes (parity3, and peaks on an 8 x 8 grid).
        seed: the init key.
        names: problem names to build, or ``None`` for every one.

    Returns:
        A list of ``Problem``.
    """
    f64 = np.float64
    specs = (
        {
            "parity3": ([3, 3, 1], lambda: fb.data.parity(3, coding="bipolar", dtype=f64)),
            "peaks": ([2, 8, 8, 1], lambda: fb.data.peaks(8, dtype=f64)),
        }
        if quick
        else {
            "sine": ([1, 10, 1], lambda: fb.data.sine(200, dtype=f64)),
            "parity3": ([3, 3, 1], lambda: fb.data.parity(3, coding="bipolar", dtype=f64)),
            "peaks": ([2, 30, 30, 1], lambda: fb.data.peaks(30, dtype=f64)),
            "franke": ([2, 20, 40, 1], lambda: franke(32)),
            "moons": ([2, 30, 30, 2], lambda: fb.data.two_moons(300, noise=0.1, dtype=f64)),
        }
    )
    out = []
    for name, (sizes, data) in specs.items():
        if names is not None and name not in names:
            continue
        x, y = data()
        net = fb.mlp(sizes, activation="tanh")
        params = net.init(jax.random.key(seed), jnp.float64)
        theta0, unravel = ravel_pytree(params)
        loss = "cross_entropy" if name == "moons" else "squared_error"
        out.append(
            Problem(
                name,
                net,
                params,
                jnp.asarray(x),
                jnp.asarray(y),
                theta0,
                unravel,
                BUDGET[name],
                tuple(sizes),
                loss,
            )
        )
    return out


def residual_fn(pb: Problem):
    """``theta: (P,) -> r: (R,)``, the residuals every library minimises (fbackprop's forward pass):
    ``yhat - y`` flattened for squared error, ``sqrt(2 CE_n)`` per example for cross-entropy."""
    if pb.loss == "squared_error":
        return lambda theta, *_: (fb.forward(pb.net, pb.unravel(theta), pb.x)[0] - pb.y).reshape(-1)

    def residual(theta, *_):
        z = fb.forward(pb.net, pb.unravel(theta), pb.x)[0]
        d = z - jnp.take_along_axis(z, pb.y[:, None], axis=1)  # logit margins to the true class
        others = jnp.where(jax.nn.one_hot(pb.y, z.shape[1], dtype=bool), -jnp.inf, d)
        ce = jax.nn.softplus(jax.nn.logsumexp(others, axis=1))  # log(1 + sum_{j != y} e^{d_j}) > 0
        return jnp.sqrt(2.0 * ce)

    return residual


def n_residuals(pb: Problem) -> int:
    """The length of ``residual_fn(pb)``'s output (what MINPACK, optimistix and jaxopt see)."""
    return pb.N if pb.loss == "cross_entropy" else pb.M
