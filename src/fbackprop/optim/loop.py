"""The one loop of the second-order optimizers: a named state, one stopping record, one history.

Every method (Levenberg-Marquardt, damped Newton, ``least_squares``, Gauss-Newton, Hessian-free)
is a ``step(state) -> Step`` function; ``iterate`` runs it in one ``lax.while_loop`` and does what
every method shares: the validation bookkeeping (early stopping, the best params), the history, the
progress line and the stopping tests, with the package's status codes (``fb.status.Status``).

Conventions: ``E`` is the method's cost at ``theta`` in its sum form and ``n`` its divisor, so the
reported cost is ``C = E / n`` (``E = sum_n l_n`` and ``n = N`` for Levenberg-Marquardt; ``n = 1``
for Hessian-free, whose cost is the mean already). ``lin`` is whatever the method carries about the
current point; it has the gradient ``lin.g = dE/dtheta``.

The loop's branches and repetition are ``Control``'s primitives: ``COMPILED`` (``lax.while_loop``,
``lax.cond``; the default, one compiled program) or ``HOST`` (Python's ``while`` and ``if``), with
which the same step and loop run on the host, around a cost and a linearization that read data
streamed in chunks (``optim/streamed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..status import Status


def _host_while_loop(cond_fun, body_fun, init):
    s = init
    while bool(cond_fun(s)):
        s = body_fun(s)
    return s


def _host_cond(pred, true_fun, false_fun):
    return true_fun() if bool(pred) else false_fun()


class Control(NamedTuple):
    """How the loop branches and repeats: the signatures of ``lax.while_loop`` and ``lax.cond``.

    Attributes:
        while_loop: ``(cond_fun, body_fun, init) -> final``.
        cond: ``(pred, true_fun, false_fun) -> `` the branch's value (both take no operands).
    """

    while_loop: Callable = jax.lax.while_loop
    cond: Callable = jax.lax.cond


#: One compiled program (``lax.while_loop``, ``lax.cond``): every in-memory method.
COMPILED = Control()
#: Python's ``while`` and ``if`` on concrete values: the loop over data streamed from the host.
HOST = Control(_host_while_loop, _host_cond)


class LMHistory(NamedTuple):
    """What each iteration recorded, arrays of shape ``(max_steps + 1,)`` in the params' dtype.

    Entry 0 is the start; entries after the stop are NaN (with a leading run axis under ``vmap``).

    Attributes:
        loss: the reported cost C after the iteration (``levenberg_marquardt``: the batch mean
            ``E / N``; ``least_squares``: ``0.5 ||r||^2 / N`` over the residual's N rows).
        mu: the damping used for the iteration's trial (Gauss-Newton: the step length taken;
            Hessian-free: the damping ``lam``).
        accepted: 1.0 where the params moved (the trial step, or after its rejection the line search's
            shorter step), 0.0 where they stayed.
        grad_norm: ``||dC/dtheta||`` at the params after the iteration.
        val_loss: the validation cost (NaN without validation data).
    """

    loss: jax.Array
    mu: jax.Array
    accepted: jax.Array
    grad_norm: jax.Array
    val_loss: jax.Array


class Stop(NamedTuple):
    """The stopping record: the tests ``iterate`` makes after every iteration, in this order.

    Attributes:
        goal: ``GOAL`` once ``C <= goal``.
        min_grad: ``MIN_GRAD`` once ``||dC/dtheta|| <= min_grad``.
        max_steps: ``MAX_STEPS`` after this many iterations (a Python int).
        mu_max: ``MU_MAX`` once the damping exceeds it (``inf``: never; Gauss-Newton, Hessian-free).
        max_fail: ``MAX_FAIL`` after this many accepted steps in a row without a lower validation cost.
    """

    goal: Any
    min_grad: Any
    max_steps: int
    mu_max: Any = float("inf")
    max_fail: Any = 1

    def status(self, k, C, grad_norm, mu, fails):
        """The status after iteration ``k``: the first test that holds, or ``RUNNING`` (0).

        Args:
            k: iterations run.
            C: the reported cost.
            grad_norm: ``||dC/dtheta||``.
            mu: the damping for the next trial.
            fails: the validation failures in a row.

        Returns:
            An ``int32`` scalar ``fb.status.Status`` code.
        """
        tests = [
            (C <= self.goal, Status.GOAL),
            (grad_norm <= self.min_grad, Status.MIN_GRAD),
            (mu > self.mu_max, Status.MU_MAX),
            (fails >= self.max_fail, Status.MAX_FAIL),
            (k >= self.max_steps, Status.MAX_STEPS),
        ]
        return jnp.select([t for t, _ in tests], [int(s) for _, s in tests], 0).astype(jnp.int32)


class State(NamedTuple):
    """What the loop carries from one iteration to the next.

    Attributes:
        theta: the flat params ``(P,)``.
        E: the cost at ``theta`` (sum form; module docstring).
        lin: the method's linearization at ``theta`` (has ``g = dE/dtheta``).
        mu: the damping for the next trial (Gauss-Newton: the last step length).
        nu: the damping rule's memory (Nielsen's growth factor; 2 at the start).
        k: iterations run, ``int32``.
        status: ``int32``, ``RUNNING`` (0) until a stopping test holds.
        history: the ``LMHistory`` so far.
        best_val: the lowest validation cost seen (``inf`` without validation data).
        best_theta: the params where it was seen.
        fails: accepted steps in a row that did not lower the validation cost, ``int32``.
    """

    theta: jax.Array
    E: jax.Array
    lin: Any
    mu: jax.Array
    nu: jax.Array
    k: jax.Array
    status: jax.Array
    history: LMHistory
    best_val: jax.Array
    best_theta: jax.Array
    fails: jax.Array


class Step(NamedTuple):
    """What one iteration of a method returns to the loop.

    Attributes:
        theta: the params after it (unchanged when the trial was rejected).
        E: their cost.
        lin: the linearization there.
        mu: the damping for the next trial.
        nu: the rule's memory.
        accepted: bool scalar, whether the trial step was taken.
        shown: what the history records as the iteration's ``mu``.
        stuck: bool scalar: the method can go no further (a failed line search: ``LINE_SEARCH``).
    """

    theta: jax.Array
    E: jax.Array
    lin: Any
    mu: jax.Array
    nu: jax.Array
    accepted: jax.Array
    shown: jax.Array
    stuck: Any = False


def start_is_finite(E0, g0, v0=None):
    """Whether a run may start: the cost, its gradient (and the validation cost, if given) finite.

    Args:
        E0: the cost at the start (a scalar).
        g0: its gradient ``(P,)``.
        v0: the validation cost, or ``None`` without validation data.

    Returns:
        A bool scalar (traceable); where it is False the run stops with ``NONFINITE_START``.
    """
    ok = jnp.isfinite(E0) & jnp.all(jnp.isfinite(g0))
    return ok if v0 is None else ok & jnp.isfinite(v0)


def _record(h: LMHistory, k, C, mu, accepted, grad_norm, vl) -> LMHistory:
    return LMHistory(
        h.loss.at[k].set(C),
        h.mu.at[k].set(mu),
        h.accepted.at[k].set(accepted),
        h.grad_norm.at[k].set(grad_norm),
        h.val_loss.at[k].set(vl),
    )


def start(theta0, E0, lin0, mu0, stop: Stop, n, shown0=None, v0=None) -> State:
    """The state before the first iteration: entry 0 of the history, and the status at the start.

    Args:
        theta0: the flat params ``(P,)``; their dtype is the loop's.
        E0: the cost there; ``lin0`` the linearization there (with ``g``).
        lin0: the method's linearization at ``theta0``.
        mu0: the starting damping.
        stop: the stopping record.
        n: the divisor of ``E`` in the reported cost.
        shown0: the history's ``mu`` at entry 0 (default ``mu0``).
        v0: the validation cost at the start, or ``None`` without validation data.

    Returns:
        A ``State``; its status is ``NONFINITE_START`` when the start is not finite.
    """
    dtype = theta0.dtype
    nan = jnp.full(stop.max_steps + 1, jnp.nan, dtype)
    vl0 = jnp.asarray(jnp.nan, dtype) if v0 is None else v0
    gn0 = jnp.linalg.norm(lin0.g) / n
    hist = _record(
        LMHistory(nan, nan, nan, nan, nan), 0, E0 / n, mu0 if shown0 is None else shown0, 1.0, gn0, vl0
    )
    status0 = jnp.where(
        start_is_finite(E0, lin0.g, v0),
        stop.status(jnp.int32(0), E0 / n, gn0, mu0, jnp.int32(0)),
        jnp.int32(Status.NONFINITE_START),
    ).astype(jnp.int32)
    best0 = jnp.asarray(jnp.inf, dtype) if v0 is None else v0
    two = jnp.asarray(2.0, dtype)
    return State(theta0, E0, lin0, mu0, two, jnp.int32(0), status0, hist, best0, theta0, jnp.int32(0))


def iterate(
    step, state: State, stop: Stop, n, val_loss=None, report=None, control: Control = COMPILED
) -> State:
    """Run ``step`` until a stopping test holds (traceable; one ``lax.while_loop``).

    Args:
        step: ``State -> Step``, one iteration of the method.
        state: the state from ``start``.
        stop: the stopping record.
        n: the divisor of ``E`` in the reported cost.
        val_loss: ``theta -> `` the validation cost, or ``None`` without validation data (static).
        report: ``(k, C, mu, accepted)``, run on the host after every iteration, or ``None``.
        control: the loop's primitives, ``COMPILED`` (default) or ``HOST`` (a loop on the host).

    Returns:
        The final ``State``. With validation data and status ``MAX_FAIL`` its ``theta`` is the
        params with the lowest validation cost.
    """
    dtype = state.theta.dtype

    def body(s: State) -> State:
        t = step(s)
        best_val, best_theta, fails = s.best_val, s.best_theta, s.fails
        vl = jnp.asarray(jnp.nan, dtype)
        if val_loss is not None:  # static: no validation work in the loop without it
            vl = control.cond(
                t.accepted, lambda: val_loss(t.theta).astype(dtype), lambda: s.history.val_loss[s.k]
            )
            improved = t.accepted & (vl < best_val)
            fails = jnp.where(t.accepted, jnp.where(improved, 0, fails + 1), fails)
            best_theta, best_val = jnp.where(improved, t.theta, best_theta), jnp.where(improved, vl, best_val)
        k, C, gn = s.k + 1, t.E / n, jnp.linalg.norm(t.lin.g) / n
        hist = _record(s.history, k, C, t.shown, jnp.asarray(t.accepted, dtype), gn, vl)
        if report is not None:
            jax.debug.callback(report, k, C, t.shown, t.accepted, ordered=True)
        status = jnp.where(t.stuck, jnp.int32(Status.LINE_SEARCH), stop.status(k, C, gn, t.mu, fails))
        return State(
            t.theta, t.E, t.lin, t.mu, t.nu, k, status.astype(jnp.int32), hist, best_val, best_theta, fails
        )

    out = control.while_loop(lambda s: s.status == 0, body, state)
    if val_loss is not None:
        out = out._replace(theta=jnp.where(out.status == Status.MAX_FAIL, out.best_theta, out.theta))
    return out


def print_progress(k, C, mu, accepted):
    """Print one line per Levenberg-Marquardt iteration (``progress=True``).

    Args:
        k: the iteration (1-based).
        C: the cost after it.
        mu: the damping its trial used.
        accepted: whether its step was taken.

    Returns:
        None (it prints to stdout).
    """
    print(
        f"LM {int(k):5d}  loss {float(C):.6e}  mu {float(mu):.1e}  {'accepted' if accepted else 'rejected'}",
        flush=True,
    )


def reporter(progress):
    """The host callback ``progress=`` asks for.

    Args:
        progress: ``True`` (print a line per iteration), ``False``/``None`` (nothing) or a callable
            ``(iteration, loss, mu, accepted)``.

    Returns:
        A callable or ``None``.

    Raises:
        TypeError: for anything else.
    """
    if progress is True:
        return print_progress
    if progress is False or progress is None or callable(progress):
        return progress or None
    raise TypeError(
        f"progress must be True, False or a callable (iteration, loss, mu, accepted); got {progress!r}"
    )
