"""Checks of the second-order optimizers' options and data, shared by every entry point.

Every option is checked at the call, before anything is compiled, and refused with a
``ValueError``/``TypeError`` that names it, says what was expected and shows what came. Options
that may be traced (an outer ``jax.jit`` over ``goal``, say) are checked only when concrete.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..layers.autodiff import Autodiff
from ..layers.network import serial
from ..streaming import Chunks, stream_of
from ..validate import (
    as_float,
    as_int,
    check_call,
    check_choice,
    check_finite,
    check_val,
    is_network,
    params_dtype,
)
from .damping import DAMPINGS, Marquardt, Nielsen, TrustRegion, check_rule, is_rule
from .line_search import Backtracking
from .solves import CG, KFAC, SOLVES, Accumulate, Newton, auto_solver, is_solve


def model(model: Any, params: Any, x: Any, what: str) -> tuple:
    """An fbackprop Network as it is, or any ``apply(params, x)`` as a one-layer network of autodiff.

    Args:
        model: a ``Network``, or a callable ``(params, x: (N, *in_shape)) -> (N, n_out)`` (a Flax
            module's ``apply``, an Equinox model's call) over any params pytree.
        params: the starting params.
        x: the inputs (for ``in_shape``).
        what: the caller, for the messages.

    Returns:
        ``(net, params, unwrap)``: for a callable, ``net = fb.serial(fb.layers.Autodiff.of(model,
        params), input_shape=x.shape[1:])``, its params ``(params,)`` and ``unwrap`` taking them back.
    """
    if isinstance(x, Chunks) or callable(x):
        raise TypeError(_whole_batch(what))
    if is_network(model):
        return model, params, lambda p: p
    if not callable(model):
        raise TypeError(
            f"{what} needs an fbackprop Network (fb.mlp, fb.serial) or an apply(params, x) callable (a Flax "
            f"module's apply, an Equinox model's call); got {model!r}"
        )
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(
            f"x must be a batch (N, *in_shape), one example per leading row, for a model given as "
            f"apply(params, x); got shape {shape}"
        )
    net = serial(Autodiff.of(model, params), input_shape=shape[1:])
    return net, (params,), lambda p: p[0]


def unwrapped(result, unwrap):
    """A result (``LMResult``) with its params taken back to the caller's structure."""
    return result._replace(params=unwrap(result.params))


def real(value: Any, name: str, **bounds) -> Any:
    """``value`` as a float in range (``validate.as_float``), or, when traced, as it is (a real scalar)."""
    if isinstance(value, jax.core.Tracer):
        if jnp.ndim(value) != 0 or not (
            jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        ):
            raise TypeError(
                f"{name} must be a real scalar; got a traced {value.dtype} array of shape {value.shape}"
            )
        return value
    return as_float(value, name, **bounds)


def open_interval(value: Any, name: str, lo: float, hi: float, why: str) -> float:
    """A concrete float strictly between ``lo`` and ``hi`` (``why``: what the bound is for)."""
    out = as_float(value, name)
    if not lo < out < hi:
        raise ValueError(f"{name} must lie in ({lo}, {hi}) ({why}); got {out}")
    return out


def flag(value: Any, name: str) -> bool:
    """A Python or NumPy bool; anything else (a string, 0/1) is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


#: ``line_search=True``'s part: up to ten halvings of a rejected Levenberg-Marquardt step.
LM_SEARCH = Backtracking(factor=0.5, armijo=1e-4, max_steps=10)


def line_search(value: Any) -> Backtracking | None:
    """``line_search``: ``None`` or ``False`` (none), ``True`` (``LM_SEARCH``), or a
    ``fb.optim.Backtracking`` part, its fields checked."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return LM_SEARCH if value else None
    if not isinstance(value, Backtracking):
        raise TypeError(
            f"line_search must be None, True or False, or a fb.optim.Backtracking(factor, armijo, "
            f"max_steps) part; got {value!r}"
        )
    open_interval(value.factor, "Backtracking.factor", 0.0, 1.0, "it shrinks the step length")
    open_interval(value.armijo, "Backtracking.armijo", 0.0, 1.0, "the sufficient-decrease constant")
    as_int(value.max_steps, "Backtracking.max_steps", minimum=0)
    return value


def stopping(goal: Any, min_grad: Any, max_steps: Any) -> tuple:
    """``goal >= 0``, ``min_grad >= 0`` (both may be traced) and ``max_steps >= 1`` (concrete)."""
    return (
        real(goal, "goal", minimum=0.0, finite=False),  # goal=inf: stop at the start
        real(min_grad, "min_grad", minimum=0.0),
        as_int(max_steps, "max_steps", minimum=1),
    )


def damping_options(
    damping: Any, mu: Any, mu_dec: Any, mu_inc: Any, mu_max: Any, params: Any = None
) -> tuple:
    """The damping part and its range: ``(rule, mu, mu_max)`` with ``mu > 0`` and ``mu <= mu_max``.

    ``damping`` is a name (``"marquardt"``, ``"nielsen"``, ``"trust_region"``), built with ``mu_dec``
    and ``mu_inc`` (``0 < mu_dec < 1 < mu_inc``), or a rule object (``damping.py``), which carries its
    own constants: ``mu_dec``/``mu_inc`` beside it, or beside ``"nielsen"`` (which has none), are refused.
    A rule object is traced once on scalars of the params' dtype (``damping.check_rule``).
    """
    mu = real(mu, "mu", minimum=0.0, open_min=True)
    mu_max = real(mu_max, "mu_max", minimum=0.0, open_min=True, finite=False)
    if not isinstance(mu, jax.core.Tracer) and not isinstance(mu_max, jax.core.Tracer) and mu > mu_max:
        raise ValueError(
            f"mu must not exceed mu_max (the run would stop before its first step); "
            f"got mu={mu}, mu_max={mu_max}"
        )
    if isinstance(damping, str) or not is_rule(damping):
        if not isinstance(damping, str):
            raise TypeError(
                f"damping must be one of {list(DAMPINGS)} or a damping rule with accept(decreased, rho) "
                f"and update(mu, nu, rho, accepted) (fb.optim.Marquardt, Nielsen, TrustRegion, or one's "
                f"own); got {damping!r}"
            )
        check_choice(damping, "damping", tuple(DAMPINGS))
        mu_dec = open_interval(mu_dec, "mu_dec", 0.0, 1.0, "it multiplies mu after an accepted step")
        mu_inc = open_interval(mu_inc, "mu_inc", 1.0, np.inf, "it multiplies mu after a rejected step")
        if damping == "nielsen":
            if (mu_dec, mu_inc) != DEFAULT_FACTORS:
                raise ValueError(
                    f"damping='nielsen' has no mu_dec or mu_inc (its factors follow the gain ratio; Nielsen "
                    f"1999): leave them at their defaults; got mu_dec={mu_dec}, mu_inc={mu_inc}"
                )
            return Nielsen(), mu, mu_max
        return DAMPINGS[damping](mu_dec, mu_inc), mu, mu_max
    if (as_float(mu_dec, "mu_dec"), as_float(mu_inc, "mu_inc")) != DEFAULT_FACTORS:
        raise ValueError(
            f"mu_dec and mu_inc belong to the damping rule: give them to it (e.g. "
            f"fb.optim.Marquardt(mu_dec=0.5, mu_inc=5.0)), not beside damping={damping!r}; "
            f"got mu_dec={mu_dec}, mu_inc={mu_inc}"
        )
    if isinstance(damping, (Marquardt, TrustRegion)):
        name = type(damping).__name__
        open_interval(damping.mu_dec, f"{name}.mu_dec", 0.0, 1.0, "it multiplies mu after a success")
        open_interval(damping.mu_inc, f"{name}.mu_inc", 1.0, np.inf, "it multiplies mu after a failure")
        if isinstance(damping, TrustRegion):
            as_float(damping.rho_accept, "TrustRegion.rho_accept", minimum=0.0)
    dtype = params_dtype(params) if params is not None else None
    check_rule(damping, dtype or jnp.float32)
    return damping, mu, mu_max


#: ``mu_dec`` and ``mu_inc``'s defaults (Marquardt 1963; MATLAB ``trainlm``).
DEFAULT_FACTORS = (0.1, 10.0)


def data(net, loss, params, x, y) -> tuple[jax.Array, jax.Array]:
    """``check_call``: shapes, dtypes (x and y cast to the params' dtype), finiteness when concrete;
    data given as chunks (a stream with ``y=None``) are refused: this method needs the whole batch."""
    if stream_of(x, y, "this method") is not None:
        raise TypeError(_whole_batch("this method"))
    return check_call(net, loss, params, x, y)


def _whole_batch(what: str) -> str:
    return (
        f"{what} needs the whole batch at once and cannot take data given as chunks (fb.Chunks): those "
        f"stream through fb.levenberg_marquardt (solver='accumulate' or 'cg') and the curvature functions "
        f"(fbackprop.streaming); pass the arrays x and y"
    )


def validation(net, loss, params, val) -> tuple[jax.Array, jax.Array] | None:
    """``val``: ``None`` or a pair ``(x_val, y_val)``, checked as the training data are."""
    return check_val(net, loss, params, val)


def nonfinite_start(params, loss0, grad0, val0=float("nan")) -> str:
    """The message of a run that stopped at once (``Status.NONFINITE_START``): what was not finite
    at the start and, the params being at hand, whether they are to blame."""
    parts = [f"loss {float(loss0):.3e}", f"gradient norm {float(grad0):.3e}"]
    if np.isfinite(float(loss0)) and np.isfinite(float(grad0)):  # then the validation loss was not
        parts.append(f"validation loss {float(val0):.3e}")
    try:
        check_finite(params, "params")
        where = (
            "the params are finite, so the data (x, y, val, or what a residual function closes over) hold "
            "NaN/Inf, or the loss overflows at these params; call outside jax.jit to have a non-finite "
            "input named"
        )
    except ValueError as err:
        where = str(err)
    return (
        f"the loss is not finite at the start; no step was taken (at the start: {', '.join(parts)}). {where}"
    )


#: The flat options of ``levenberg_marquardt`` that belong to a solve part, with their defaults.
FLAT_DEFAULTS = {"chunk_size": 1024, "cg_tol": 1e-8, "cg_maxiter": None}


def solve_part(
    solver, curvature: str, scaling: str, flat: dict, n_rows: int, n_params: int, itemsize: int, gram=None
):
    """The solve part ``levenberg_marquardt``'s options ask for, checked.

    Args:
        solver: a name of ``SOLVES``, ``"auto"`` or a solve part (an object with ``linearize`` and ``solve``).
        curvature: ``"ggn"`` or ``"hessian"`` (then ``Newton()``).
        scaling: ``"identity"`` or ``"marquardt"``.
        flat: the flat options ``chunk_size``, ``cg_tol``, ``cg_maxiter`` as given.
        n_rows: ``N n_out`` (for ``"auto"``).
        n_params: P.
        itemsize: bytes per number.
        gram: the dual's Gram cost for ``auto_solver`` (``solves.dual_gram_flops``), or ``None``.

    Returns:
        A solve part.

    Raises:
        TypeError, ValueError: naming the option, what was expected and what came.
    """
    if not isinstance(solver, str):
        if not is_solve(solver):
            raise TypeError(
                f"solver must be one of {list(SOLVES) + ['auto']} or a solve part with linearize(pb, theta) "
                f"and solve(pb, lin, mu) (fb.optim.Dense, Accumulate, CG, Dual, KFAC); got {solver!r}"
            )
        given = {k: v for k, v in flat.items() if v is not FLAT_DEFAULTS[k] and v != FLAT_DEFAULTS[k]}
        if given:
            raise ValueError(
                f"{', '.join(given)} belong to the solve part: give them to it (e.g. fb.optim.CG(tol=1e-10, "
                f"maxiter=50), fb.optim.Accumulate(chunk_size=256)), not beside solver={solver!r}"
            )
        if curvature == "hessian":
            raise ValueError(
                f"curvature='hessian' is the solve part fb.optim.Newton(): pass solver=fb.optim.Newton() or "
                f"solver='dense' with curvature='hessian', not solver={solver!r}"
            )
        part = _checked(solver)
    else:
        check_choice(solver, "solver", tuple(SOLVES) + ("auto",))
        if curvature == "hessian" and solver not in ("auto", "dense"):
            raise ValueError(
                f"curvature='hessian' (damped Newton) forms the Hessian and solves densely: solver must be "
                f"'dense' or 'auto'; got {solver!r}"
            )
        chunk_size = as_int(flat["chunk_size"], "chunk_size")
        cg_tol = as_float(flat["cg_tol"], "cg_tol", minimum=0.0)
        maxiter = None if flat["cg_maxiter"] is None else as_int(flat["cg_maxiter"], "cg_maxiter")
        if curvature == "hessian":
            return Newton()
        name = auto_solver(n_rows, n_params, itemsize, gram) if solver == "auto" else solver
        with_options = {
            "accumulate": lambda: Accumulate(chunk_size),
            "cg": lambda: CG(cg_tol, maxiter, chunk_size),
        }
        part = with_options.get(name, SOLVES[name])()
    if isinstance(part, KFAC) and scaling != "identity":
        raise ValueError(
            f"solver=fb.optim.KFAC() damps with the identity (Martens & Grosse's factored damping): "
            f"scaling must be 'identity'; got {scaling!r}"
        )
    return part


def _checked(part):
    """A built-in part's own options, checked (a user's part is taken as it is)."""
    name = type(part).__name__
    if isinstance(part, (Accumulate, CG)):
        part = dataclasses.replace(part, chunk_size=as_int(part.chunk_size, f"{name}.chunk_size"))
    if isinstance(part, CG):
        maxiter = None if part.maxiter is None else as_int(part.maxiter, "CG.maxiter")
        part = dataclasses.replace(part, tol=as_float(part.tol, "CG.tol", minimum=0.0), maxiter=maxiter)
    if isinstance(part, KFAC):
        check_choice(part.kind, "KFAC.kind", ("exact", "empirical"))
    try:
        hash(part)
    except TypeError as err:
        raise TypeError(
            f"a solve part must be hashable (it keys the compiled program); got {name}: {err}"
        ) from None
    return part
