"""Levenberg-Marquardt training, one compiled ``lax.while_loop`` (Levenberg 1944; Marquardt 1963;
for neural networks Hagan & Menhaj 1994).

Each iteration tries one step ``theta + delta`` with ``(G + mu D) delta = -g`` (``solvers.py``:
``G = sum_n J_n^T H_n J_n``, ``J^T J`` for squared error; ``g = J^T e``): a step that lowers the
cost ``E = sum_n l_n`` (and, for the trust-region rule, whose gain ratio is large enough) is
taken, and ``J`` is formed anew at the new point; a rejected step leaves the params unchanged and
only ``mu`` moves (``damping.py``), unless ``line_search`` finds a shorter step along it. So the
loss never increases across accepted steps, and a singular or non-finite system (NaN from the
Cholesky, an overflowing step) is a rejected step with a larger ``mu``, never NaN params.
Cross-entropy losses use the same machinery through the generalized Gauss-Newton ``G``
(Schraudolph 2002).

Reported loss: ``C = E / N``, the batch mean of the per-example losses (``loss(yhat, y)``; for
squared error ``0.5 ||yhat_n - y_n||^2`` summed over the outputs, averaged over the N rows).

Stopping (MATLAB ``trainlm``'s names and defaults where they exist), with the package's status
codes (``fb.status.Status``): ``max_steps`` trials (``epochs``, 1000; ``MAX_STEPS``),
``C <= goal`` (0; ``GOAL``), ``||dC/dtheta|| <= min_grad`` (1e-7; ``MIN_GRAD``), ``mu > mu_max``
(1e10; ``MU_MAX``), and ``max_fail`` (6) accepted steps in a row that do not improve the
validation loss, when validation data are given (``MAX_FAIL``; the params returned are then those
with the lowest validation loss). A start whose loss, gradient or validation loss is not finite
(NaN/Inf in params, x or y under ``jit``, where they cannot be read; or an overflowing loss)
stops at once with ``NONFINITE_START``, the params unchanged.

Dtypes: the params' dtype is the computation's dtype; ``x`` and ``y`` are cast to it and the loop
state (``mu``, the history, ``E``) is held in it.

This module checks the arguments and assembles the parts: a solve part (``solves.py``), a damping
rule (``damping.py``), the trial step (``lm_loop.py``, shared with ``newton`` and ``least_squares``)
and the package's one loop (``loop.py``: the named state, the stopping record, the history). The
result's ``mu`` is the damping for the next trial, so a run continues with ``mu=result.mu``.

The call works inside ``jax.jit`` and under ``jax.vmap`` over params (many seeds in one program;
the loop then runs until the slowest seed stops, and each run keeps its own history and status).

Data larger than memory come as chunks (``fb.Chunks``, ``fbackprop.streaming``) in the ``x``
position with ``y=None``: the ``accumulate`` and ``cg`` solvers then sum over the chunks on the
host, and the same trial step and loop run with host control flow (``optim/streamed.py``); the
in-memory program above is not touched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import losses as _losses
from ..backprop import forward
from ..kronecker import kfac_options
from ..sharding import shard_batch
from ..status import MESSAGES, Status
from ..streaming import stream_of
from ..validate import as_int, check_choice, is_concrete, is_network, params_dtype
from . import _options as O
from . import solvers as S
from . import streamed
from .line_search import Backtracking
from .lm_loop import lm_run
from .loop import LMHistory, reporter
from .solves import KFAC, auto_solver, dual_gram_flops  # noqa: F401 (auto_solver: fb.optim's)

# The package's status codes (``fb.status``), under the names this module has always exported.
MAX_STEPS, GOAL, MIN_GRAD, MU_MAX = Status.MAX_STEPS, Status.GOAL, Status.MIN_GRAD, Status.MU_MAX
MAX_FAIL, LINE_SEARCH, NONFINITE_START = Status.MAX_FAIL, Status.LINE_SEARCH, Status.NONFINITE_START
STATUS = MESSAGES
SCALINGS = ("identity", "marquardt")
CURVATURES = ("ggn", "hessian")


class LMResult(NamedTuple):
    """The outcome of a second-order run (``levenberg_marquardt``, ``newton``, ``gauss_newton``,
    ``hessian_free``, ``least_squares``).

    Attributes:
        params: the final params (the best on validation data for ``MAX_FAIL``), as given.
        history: an ``LMHistory``.
        status: ``int32`` code of ``fb.status.Status`` (``MESSAGES[int(status)]`` says why it stopped).
        iterations: ``int32``, the number of iterations run (trial steps, accepted or not).
        mu: the damping the next trial would use (``lam`` for Hessian-free; NaN for the undamped
            Gauss-Newton): pass it as ``mu=`` (``lam=``) with the final params to continue the run.
    """

    params: Any
    history: LMHistory
    status: jax.Array
    iterations: jax.Array
    mu: jax.Array

    @property
    def message(self) -> str:
        """Why the run stopped, how many steps it took and how far the loss went (one run, not vmapped)."""
        if int(self.status) == NONFINITE_START:
            h = self.history
            return O.nonfinite_start(self.params, h.loss[0], h.grad_norm[0], h.val_loss[0])
        taken = int(jnp.nansum(self.history.accepted[1:]))
        return (
            f"{MESSAGES[int(self.status)]} after {int(self.iterations)} iterations ({taken} steps accepted); "
            f"loss {float(self.history.loss[0]):.3e} -> {float(self.history.loss[int(self.iterations)]):.3e}"
        )


def levenberg_marquardt(
    net,
    params,
    x,
    y,
    *,
    loss: str | _losses.Loss = "squared_error",
    solver: str = "auto",
    damping: str = "marquardt",
    scaling: str = "identity",
    mu: float = 1e-3,
    mu_dec: float = 0.1,
    mu_inc: float = 10.0,
    mu_max: float = 1e10,
    line_search: bool | Backtracking | None = None,
    max_steps: int = 1000,
    goal: float = 0.0,
    min_grad: float = 1e-7,
    val: tuple | None = None,
    max_fail: int = 6,
    chunk_size: int = 1024,
    cg_tol: float = 1e-8,
    cg_maxiter: int | None = None,
    data_parallel: bool = False,
    curvature: str = "ggn",
    progress: bool | Callable = False,
) -> LMResult:
    """Train ``net`` from ``params`` by Levenberg-Marquardt (Marquardt 1963; Hagan & Menhaj 1994).

    One compiled loop (module docstring); every option is checked here, before compiling.

    Args:
        net: an fbackprop ``Network`` (``fb.mlp``, ``fb.serial``: the hand-written passes), or any
            model ``apply(params, x) -> (N, n_out)`` over any params pytree (a Flax module's ``apply``,
            an Equinox model's call): its Jacobian and curvature then come from autodiff
            (``fb.layers.Autodiff``); define it once, so that the compiled program is reused.
        params: the starting params, the tuple of ``{"W": (fan_out, fan_in), "b": (fan_out,)}``; their
            dtype is the computation's dtype.
        x: inputs ``(N, n_in)``, or the data as chunks (``fb.Chunks``, or a callable / re-iterable of
            ``(x, y)`` pairs) with ``y=None``, never all held at once (``fbackprop.streaming``): then
            ``solver`` is ``"accumulate"``, ``"cg"`` or ``"auto"`` (which picks one of them), the loop
            runs on the host (``optim/streamed.py``) and the result is the in-memory run's.
        y: targets ``(N, n_out)`` (``(N,)`` for one output; integer labels ``(N,)`` for cross-entropy);
            ``None`` beside chunks.
        loss: a loss name or ``fb.losses.Loss``; default ``"squared_error"``.
        solver: how ``(G + mu D) delta = -g`` is solved: ``"dense"`` (J formed, Cholesky),
            ``"accumulate"`` (G summed over chunks of examples; Wilamowski & Yu 2010), ``"cg"``
            (matrix-free conjugate gradients), ``"dual"`` (an ``N n_out``-square system, for fewer
            residuals than params; ``N (n_out - 1)``-square for cross-entropy without scaling),
            ``"auto"`` (default; ``auto_solver``), or a solve part with its own options
            (``fb.optim.Dense()``, ``Accumulate(chunk_size)``, ``CG(tol, maxiter)``,
            ``Dual()``, ``KFAC()``: K-FAC's Kronecker-factored ``G``; ``fbackprop.optim.solves``).
        damping: how ``mu`` answers a trial: ``"marquardt"`` (default; Marquardt 1963), ``"nielsen"``
            (Nielsen 1999), ``"trust_region"`` (gain-ratio thresholds, as MINPACK; Moré 1978), or a
            damping rule: ``fb.optim.Marquardt(mu_dec, mu_inc)``, ``Nielsen()``,
            ``TrustRegion(mu_dec, mu_inc, rho_accept)``, or any object with ``accept(decreased, rho)``
            and ``update(mu, nu, rho, accepted)`` (``fbackprop.optim.damping``).
        scaling: ``D = I`` (``"identity"``, default) or the running maximum of ``diag(G)``
            (``"marquardt"``; Marquardt 1963, Moré 1978).
        mu: the starting damping, > 0 (default 1e-3); a previous run's ``result.mu`` continues it.
        mu_dec: ``mu`` is multiplied by it after an accepted step, in (0, 1) (default 0.1; for a
            damping given by name, ``"marquardt"`` or ``"trust_region"``).
        mu_inc: ``mu`` is multiplied by it after a rejected step, > 1 (default 10; as ``mu_dec``).
        mu_max: the run stops (``MU_MAX``) when ``mu`` exceeds it; >= ``mu`` (default 1e10).
        line_search: ``None`` (default; the classic method) or a backtracking search along a rejected
            trial's step before ``mu`` grows: ``True`` for up to ten halvings with Armijo's test, or
            ``fb.optim.Backtracking(factor, armijo, max_steps)``. A point it finds is taken (no new
            solve: cost evaluations only); the damping still answers the rejected trial.
        max_steps: the most trial steps, an integer >= 1 (default 1000).
        goal: stop (``GOAL``) once ``C <= goal``; >= 0 (default 0).
        min_grad: stop (``MIN_GRAD``) once ``||dC/dtheta|| <= min_grad``; >= 0 (default 1e-7).
        val: validation data ``(x_val, y_val)`` or ``None`` (default): with them the run stops
            (``MAX_FAIL``) after ``max_fail`` accepted steps in a row that do not lower the
            validation loss, and returns the params with the lowest one.
        max_fail: an integer >= 1 (default 6; MATLAB ``trainlm``'s).
        chunk_size: examples per chunk for ``"accumulate"`` and the exact GGN diagonal of
            ``"cg"`` with Marquardt scaling, an integer >= 1 (default 1024; ``Accumulate.chunk_size``,
            ``CG.chunk_size`` when a part is given).
        cg_tol: the relative residual at which ``"cg"`` stops, >= 0 (default 1e-8; ``CG.tol``).
        cg_maxiter: the most CG iterations per solve, an integer >= 1, or ``None`` (default) for 10 P
            (``CG.maxiter``).
        data_parallel: shard the batch over the local devices (the sums over examples in ``G``
            and ``g`` become all-reduces); default ``False``.
        curvature: ``"ggn"`` (default) or ``"hessian"``: the exact Hessian of ``E`` in place of
            ``G`` with the dense solve (damped Newton; ``fb.newton``).
        progress: ``True`` prints a line per iteration; a callable ``(iteration, loss, mu,
            accepted)`` is called with each, from the compiled loop (``jax.debug.callback``);
            default ``False`` (no host round trip).

    Returns:
        ``LMResult(params, history, status, iterations, mu)``: ``history.loss[k]`` is the batch-mean
        cost ``C = E / N`` after iteration k (entry 0: the start), ``status`` a ``fb.status.Status``
        code, ``message`` the reason in words.

    Raises:
        TypeError, ValueError: for a bad argument, naming it, before anything is compiled.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> r = fb.levenberg_marquardt(net, params, x, y, max_steps=5)
        >>> r.params[0]["W"].shape, isinstance(r.message, str)
        ((3, 2), True)
    """
    stream = stream_of(x, y, "fb.levenberg_marquardt")
    like = x  # what the model's input shape is read from (an apply callable's)
    if stream is not None:
        like, x = (None if is_network(net) else stream.first()[0]), stream
    net, params, unwrap = O.model(net, params, like, "fb.levenberg_marquardt")
    loss = _losses.get(loss)
    result = _run(
        net,
        loss,
        params,
        x,
        y,
        solver=solver,
        damping=damping,
        scaling=scaling,
        mu=mu,
        mu_dec=mu_dec,
        mu_inc=mu_inc,
        mu_max=mu_max,
        line_search=line_search,
        max_steps=max_steps,
        goal=goal,
        min_grad=min_grad,
        val=val,
        max_fail=max_fail,
        chunk_size=chunk_size,
        cg_tol=cg_tol,
        cg_maxiter=cg_maxiter,
        data_parallel=data_parallel,
        curvature=curvature,
        progress=progress,
    )
    return O.unwrapped(result, unwrap)


def _run(
    net,
    loss,
    params,
    x,
    y,
    *,
    solver,
    damping,
    scaling,
    mu,
    mu_dec,
    mu_inc,
    mu_max,
    line_search,
    max_steps,
    goal,
    min_grad,
    val,
    max_fail,
    chunk_size,
    cg_tol,
    cg_maxiter,
    data_parallel,
    curvature,
    progress,
) -> LMResult:
    check_choice(scaling, "scaling", SCALINGS)
    check_choice(curvature, "curvature", CURVATURES)
    rule, mu, mu_max = O.damping_options(damping, mu, mu_dec, mu_inc, mu_max, params)
    goal, min_grad, max_steps = O.stopping(goal, min_grad, max_steps)
    max_fail = as_int(max_fail, "max_fail")
    data_parallel, report = O.flag(data_parallel, "data_parallel"), reporter(progress)
    flat = {"chunk_size": chunk_size, "cg_tol": cg_tol, "cg_maxiter": cg_maxiter}
    chunks = stream_of(x, y, "fb.levenberg_marquardt")
    search = O.line_search(line_search)
    if chunks is not None:
        scalars = (mu, mu_max, goal, min_grad, max_fail)
        options = (solver, curvature, scaling, flat, data_parallel, rule, search, max_steps, val, report)
        options += (scalars,)
        return _run_streamed(net, loss, params, chunks, *options)
    x, y = O.data(net, loss, params, x, y)
    val = O.validation(net, loss, params, val)
    M = x.shape[0] * net.n_out
    gram = dual_gram_flops(net, M, scaling == "marquardt")
    part = O.solve_part(solver, curvature, scaling, flat, M, net.n_params, x.dtype.itemsize, gram)
    if isinstance(part, KFAC):
        kfac_options(net, loss, part.kind, 1, "fb.levenberg_marquardt(solver=fb.optim.KFAC())")
    if data_parallel:
        x, y = shard_batch(x, y)
    config = _Config(part, rule, scaling == "marquardt", max_steps, val is not None, report, search)
    params, hist, status, k, mu_next = _compiled(net, loss, config)(
        params, x, y, val if val is not None else (x, y), mu, mu_max, goal, min_grad, max_fail
    )
    return LMResult(params, hist, status, k, mu_next)


def _run_streamed(
    net,
    loss,
    params,
    chunks,
    solver,
    curvature,
    scaling,
    flat,
    data_parallel,
    rule,
    search,
    max_steps,
    val,
    report,
    scalars,
) -> LMResult:
    """The run over data given as chunks (``optim/streamed.py``): every chunk checked, then the loop."""
    if not is_concrete((params, scalars)):
        raise TypeError(
            "fb.levenberg_marquardt on data given as chunks runs its loop on the host, reading the chunks at "
            "every iteration: call it outside jax.jit and jax.vmap (its params and options concrete)"
        )
    name = streamed.solver_name(solver, curvature, data_parallel, net.n_params)
    itemsize = np.dtype(params_dtype(params)).itemsize
    part = O.solve_part(name, curvature, scaling, flat, 1, net.n_params, itemsize)  # "auto" resolved
    n_rows = chunks.rows(net, loss, params)  # the boundary: every chunk checked before compiling
    val = O.validation(net, loss, params, val)
    config = _Config(part, rule, scaling == "marquardt", max_steps, val is not None, report, search)
    return LMResult(*streamed.run(net, loss, params, chunks, part, config, n_rows, val, scalars))


class _Config(NamedTuple):
    """What the compiled program is specialised on (hashable: it keys the cache)."""

    solve: Any  # the solve part
    damping: Any  # the damping part
    scale_d: bool
    max_steps: int
    has_val: bool
    report: Callable | None
    search: Backtracking | None = None  # the line search after a rejected trial


@functools.lru_cache(maxsize=64)
def _compiled(net, loss, config: _Config):
    def run(params, x, y, val, mu0, mu_max, goal, min_grad, max_fail):
        theta0, unflatten = ravel_pytree(params)  # inside the program: no per-call dispatch
        pb = S.Problem(
            net=net, loss=loss, x=x, y=y, unflatten=unflatten, scale_d=config.scale_d,
            chunk_size=1024, cg_tol=1e-8, cg_maxiter=10 * theta0.size,
        )  # fmt: skip
        cost = lambda t, xx, yy: jnp.sum(loss.value(forward(net, unflatten(t), xx)[0], yy))  # E = N C
        val_loss = (lambda t: cost(t, *val) / val[0].shape[0]) if config.has_val else None
        part = config.solve
        loop = lm_run(
            lambda t: cost(t, x, y),
            lambda t: part.linearize(pb, t),
            lambda lin, mu: part.solve(pb, lin, mu),
            config.damping,
            config.scale_d,
            x.shape[0],
            config.max_steps,
            val_loss,
            config.report,
            search=config.search,
        )
        s = loop(theta0, *_scalars(theta0.dtype, mu0, mu_max, goal, min_grad), jnp.int32(max_fail))
        return unflatten(s.theta), s.history, s.status, s.k, s.mu

    return jax.jit(run)


def _scalars(dtype, *values):
    return tuple(jnp.asarray(v, dtype) for v in values)
