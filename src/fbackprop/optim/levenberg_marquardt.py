"""Levenberg-Marquardt training, one compiled ``lax.while_loop`` (seed 000, "Second-order gradient descent").

Each iteration tries one step ``theta + delta`` with ``(G + mu D) delta = -g`` (``solvers.py``:
``G = sum_n J_n^T H_n J_n``, ``J^T J`` for squared error; ``g = J^T e``): a step that lowers the
cost ``E = sum_n l_n`` (and, for the trust-region rule, whose gain ratio is large enough) is
taken, and ``J`` is formed anew at the new point; a rejected step leaves the params unchanged and
only ``mu`` moves (``damping.py``). So the loss never increases across accepted steps, and a
singular or non-finite system (NaN from the Cholesky, an overflowing step) is a rejected step
with a larger ``mu``, never NaN params. Cross-entropy losses use the same machinery through the
generalized Gauss-Newton ``G``.

Stopping (MATLAB ``trainlm``'s names and defaults where they exist): ``max_steps`` trials
(``epochs``, 1000), ``C <= goal`` (0), ``||dC/dtheta|| <= min_grad`` (1e-7), ``mu > mu_max`` (1e10),
and ``max_fail`` (6) accepted steps in a row that do not improve the validation loss, when
validation data are given (then the params returned are those with the lowest validation loss).

The call works inside ``jax.jit`` and under ``jax.vmap`` over params (many seeds in one program;
the loop then runs until the slowest seed stops, and each run keeps its own history and status).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import losses as _losses
from ..backprop import forward
from ..train import shard_batch
from ..validate import check_call, require_network
from . import solvers as S
from .damping import DAMPINGS, Damping

MAX_STEPS, GOAL, MIN_GRAD, MU_MAX, MAX_FAIL = 1, 2, 3, 4, 5
STATUS = {0: "running", MAX_STEPS: "max steps", GOAL: "loss goal reached", MIN_GRAD: "gradient below min_grad",
          MU_MAX: "mu above mu_max", MAX_FAIL: "validation loss rose max_fail times in a row"}
SCALINGS = ("identity", "marquardt")


class LMHistory(NamedTuple):
    """Per iteration (entry 0: the start; NaN after the stop): ``loss`` C after the iteration, ``mu``
    used for its trial, ``accepted`` (1.0/0.0), ``grad_norm`` ``||dC/dtheta||`` at the current params,
    ``val_loss`` (NaN without validation data)."""

    loss: jax.Array
    mu: jax.Array
    accepted: jax.Array
    grad_norm: jax.Array
    val_loss: jax.Array


class LMResult(NamedTuple):
    params: Any
    history: LMHistory
    status: jax.Array
    iterations: jax.Array

    @property
    def message(self) -> str:
        taken = int(jnp.nansum(self.history.accepted[1:]))
        return (f"{STATUS[int(self.status)]} after {int(self.iterations)} iterations ({taken} steps accepted); "
                f"loss {float(self.history.loss[0]):.3e} -> {float(self.history.loss[int(self.iterations)]):.3e}")


def auto_solver(n_rows: int, n_params: int, itemsize: int = 8) -> str:
    """``dual`` when there are fewer residuals than params (and their square fits), ``dense`` when J fits
    in 256 MB and P <= 4096, ``accumulate`` when only G fits, ``cg`` beyond."""
    if n_rows < n_params and n_rows <= 4096:
        return "dual"
    if n_params <= 4096:
        return "dense" if n_rows * n_params * itemsize <= 2**28 else "accumulate"
    return "cg"


def _check_options(solver, damping, scaling, max_steps, mu):
    for name, value, allowed in (("solver", solver, S.SOLVERS), ("damping", damping, DAMPINGS), ("scaling", scaling, SCALINGS)):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}" + (" or 'auto'" if name == "solver" else ""))
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1; got {max_steps}")
    if not mu > 0:
        raise ValueError(f"mu must be positive (the damping multiplies it on failure); got {mu}")


def levenberg_marquardt(net, params, x, y, *, loss: str | _losses.Loss = "squared_error", solver: str = "auto",
                        damping: str = "marquardt", scaling: str = "identity", mu: float = 1e-3, mu_dec: float = 0.1,
                        mu_inc: float = 10.0, mu_max: float = 1e10, max_steps: int = 1000, goal: float = 0.0,
                        min_grad: float = 1e-7, val: tuple | None = None, max_fail: int = 6, chunk_size: int = 1024,
                        cg_tol: float = 1e-8, cg_maxiter: int | None = None, data_parallel: bool = False,
                        curvature: str = "ggn", progress: bool | Callable = False) -> LMResult:
    """Train ``net`` from ``params`` on ``x: (N, n_in)``, ``y`` by Levenberg-Marquardt (module docstring).

    ``solver``: ``"dense" | "accumulate" | "cg" | "dual" | "auto"`` (``solvers.py``); ``damping``:
    ``"marquardt" | "nielsen" | "trust_region"``; ``scaling``: ``D = I`` (``"identity"``) or
    ``diag(G)`` (``"marquardt"``); ``chunk_size``: examples per chunk for ``accumulate`` and the
    exact GGN diagonal; ``data_parallel``: shard the batch over the local devices (the sums over
    examples in ``G`` and ``g`` become all-reduces); ``curvature="hessian"``: the exact Hessian in
    place of ``G`` (damped Newton, ``fb.newton``); ``progress``: ``True`` prints a line per iteration,
    a callable ``(iteration, loss, mu, accepted)`` is called with each, from the compiled loop through
    ``jax.debug.callback`` (off by default: no host round trip). Returns
    ``LMResult(params, history, status, iterations)``.
    """
    net, loss = require_network(net, "levenberg_marquardt"), _losses.get(loss)
    x, y = check_call(net, loss, params, x, y)
    if val is not None:
        val = check_call(net, loss, params, *val)
    P = net.n_params
    solver = auto_solver(x.shape[0] * net.n_out, P, x.dtype.itemsize) if solver == "auto" else solver
    _check_options(solver, damping, scaling, max_steps, mu)
    if curvature not in ("ggn", "hessian"):
        raise ValueError(f"unknown curvature {curvature!r}; expected 'ggn' or 'hessian'")
    if data_parallel:
        x, y = shard_batch(x, y)
    config = (solver if curvature == "ggn" else "newton", Damping(damping, mu_dec, mu_inc), scaling == "marquardt",
              max_steps, chunk_size, cg_tol, cg_maxiter or 10 * P, val is not None, _reporter(progress))
    params, hist, status, k = _compiled(net, loss, config)(params, x, y, val if val is not None else (x, y),
                                                          mu, mu_max, goal, min_grad, max_fail)
    return LMResult(params, hist, status, k)


def print_progress(k, C, mu, accepted):
    """One line per Levenberg-Marquardt iteration (``progress=True``)."""
    print(f"LM {int(k):5d}  loss {float(C):.6e}  mu {float(mu):.1e}  {'accepted' if accepted else 'rejected'}", flush=True)


def _reporter(progress):
    if progress is True:
        return print_progress
    if progress is False or progress is None or callable(progress):
        return progress or None
    raise TypeError(f"progress must be True, False or a callable (iteration, loss, mu, accepted); got {progress!r}")


def _scalars(dtype, *values):
    return tuple(jnp.asarray(v, dtype) for v in values)


def lm_loop(cost, linearize, solve, val_loss, damping: Damping, max_steps: int, n: int, has_val: bool,
            scale_d: bool, report=None):
    """The loop itself over flat params, for any ``cost(theta) -> E`` and linear solve (traceable).

    ``linearize(theta) -> lin`` (with ``lin.g``, ``lin.d``), ``solve(lin, mu) -> (delta, predicted)``
    (``predicted``: the quadratic model's decrease); ``n`` divides E into the reported C. Returns
    ``run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> (theta, LMHistory, status, iterations)``.
    ``report(k, C, mu, accepted)``, if given, runs on the host after every iteration.
    """

    def running_max_d(lin, d_before):
        return S.with_damping_diag(lin, jnp.maximum(lin.d, d_before)) if scale_d else lin

    def run(theta0, mu0, mu_max, goal, min_grad, max_fail):
        nan = jnp.full(max_steps + 1, jnp.nan, theta0.dtype)

        def record(h, k, E, mu, accepted, g, vl):
            return LMHistory(h.loss.at[k].set(E / n), h.mu.at[k].set(mu), h.accepted.at[k].set(accepted),
                             h.grad_norm.at[k].set(jnp.linalg.norm(g) / n), h.val_loss.at[k].set(vl))

        def stopping(k, E, g, mu, fails):
            return jnp.select([E / n <= goal, jnp.linalg.norm(g) / n <= min_grad, mu > mu_max, fails >= max_fail, k >= max_steps],
                              [GOAL, MIN_GRAD, MU_MAX, MAX_FAIL, MAX_STEPS], 0).astype(jnp.int32)

        lin0, E0, v0 = linearize(theta0), cost(theta0), val_loss(theta0)
        hist = record(LMHistory(nan, nan, nan, nan, nan), 0, E0, mu0, 1.0, lin0.g, v0)

        def body(s):
            theta, E, lin, mu, nu, k, _, hist, best, best_theta, fails = s
            delta, predicted = solve(lin, mu)
            trial = theta + delta
            E_new = cost(trial)
            rho = jnp.where(predicted > 0, (E - E_new) / predicted, -jnp.inf)
            ok = jnp.isfinite(E_new) & jnp.all(jnp.isfinite(delta))
            accepted = damping.accept(ok & (E_new < E), rho)
            mu_next, nu = damping.update(mu, nu, jnp.where(ok, rho, -jnp.inf), accepted)
            theta, E = jnp.where(accepted, trial, theta), jnp.where(accepted, E_new, E)
            lin = jax.lax.cond(accepted, lambda: running_max_d(linearize(theta), lin.d), lambda: lin)
            vl = jnp.asarray(jnp.nan, theta.dtype)
            if has_val:                                    # static: no validation work in the loop without it
                vl = jax.lax.cond(accepted, lambda: val_loss(theta), lambda: hist.val_loss[k])
                improved = accepted & (vl < best)
                fails = jnp.where(accepted, jnp.where(improved, 0, fails + 1), fails)
                best_theta, best = jnp.where(improved, theta, best_theta), jnp.where(improved, vl, best)
            hist = record(hist, k + 1, E, mu, accepted.astype(theta.dtype), lin.g, vl)
            if report is not None:
                jax.debug.callback(report, k + 1, E / n, mu, accepted, ordered=True)
            return theta, E, lin, mu_next, nu, k + 1, stopping(k + 1, E, lin.g, mu_next, fails), hist, best, best_theta, fails

        state = (theta0, E0, lin0, mu0, jnp.asarray(2.0, theta0.dtype), jnp.int32(0),
                 stopping(jnp.int32(0), E0, lin0.g, mu0, jnp.int32(0)), hist, v0 if has_val else jnp.inf, theta0, jnp.int32(0))
        theta, E, _, _, _, k, status, hist, _, best_theta, _ = jax.lax.while_loop(lambda s: s[6] == 0, body, state)
        theta = jnp.where(status == MAX_FAIL, best_theta, theta) if has_val else theta
        return theta, hist, status, k

    return run


@functools.lru_cache(maxsize=64)
def _compiled(net, loss, config):
    solver, damping, scale_d, max_steps, chunk_size, cg_tol, cg_maxiter, has_val, report = config
    linearize = {"dense": S.linearize_dense, "accumulate": S.linearize_accumulate, "cg": S.linearize_cg,
                 "dual": S.linearize_dual, "newton": S.linearize_newton}[solver]
    solve = {"cg": S.solve_cg, "dual": S.solve_dual}.get(solver, lambda pb, lin, mu: S.solve_normal(lin, mu))

    def run(params, x, y, val, mu0, mu_max, goal, min_grad, max_fail):
        theta0, unflatten = ravel_pytree(params)          # inside the program: no per-call dispatch
        pb = S.Problem(net, loss, x, y, unflatten, scale_d, chunk_size, cg_tol, cg_maxiter)
        cost = lambda t, xx, yy: jnp.sum(loss.value(forward(net, unflatten(t), xx)[0], yy))   # E = N C
        val_loss = (lambda t: cost(t, *val) / val[0].shape[0]) if has_val else (lambda t: jnp.asarray(jnp.nan, t.dtype))
        loop = lm_loop(lambda t: cost(t, x, y), lambda t: linearize(pb, t), lambda lin, mu: solve(pb, lin, mu),
                       val_loss, damping, max_steps, x.shape[0], has_val, scale_d, report)
        theta, hist, status, k = loop(theta0, *_scalars(theta0.dtype, mu0, mu_max, goal, min_grad), jnp.int32(max_fail))
        return unflatten(theta), hist, status, k

    return jax.jit(run)


def newton(net, params, x, y, **options) -> LMResult:
    """Damped Newton with the exact Hessian (small nets): Levenberg-Marquardt's loop with ``G`` replaced
    by ``d2E/dtheta^2`` (dense, autodiff); an indefinite ``H + mu D`` fails its Cholesky, so the step is
    rejected and ``mu`` grows until the damped Hessian is positive definite. Options as ``levenberg_marquardt``."""
    return levenberg_marquardt(net, params, x, y, **{**options, "curvature": "hessian", "solver": "dense"})


def _like(net, theta):
    """A params pytree of ``net``'s shapes in ``theta``'s dtype (for unflattening inside the program)."""
    return tuple({"W": jnp.zeros((l.n_out, l.n_in), theta.dtype), "b": jnp.zeros((l.n_out,), theta.dtype)} for l in net.dense)
