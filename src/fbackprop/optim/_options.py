"""Checks of the second-order optimizers' options and data, shared by every entry point.

Every option is checked at the call, before anything is compiled, and refused with a
``ValueError``/``TypeError`` that names it, says what was expected and shows what came. Options
that may be traced (an outer ``jax.jit`` over ``goal``, say) are checked only when concrete.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..validate import as_float, as_int, check_call, check_choice, check_finite, check_val, require_network

#: What to call instead when an optimizer is given a Flax/Equinox ``apply`` rather than a Network.
ALTERNATIVE = (
    "fb.least_squares(residual, params), Levenberg-Marquardt for any residual function "
    "and params pytree (e.g. residual = lambda p: apply(p, x) - y for squared error)"
)


def network(model: Any, what: str):
    """``model`` as a Network, or a TypeError that names ``what`` and the generic entry point."""
    return require_network(model, what, ALTERNATIVE)


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


def stopping(goal: Any, min_grad: Any, max_steps: Any) -> tuple:
    """``goal >= 0``, ``min_grad >= 0`` (both may be traced) and ``max_steps >= 1`` (concrete)."""
    return (
        real(goal, "goal", minimum=0.0, finite=False),  # goal=inf: stop at the start
        real(min_grad, "min_grad", minimum=0.0),
        as_int(max_steps, "max_steps", minimum=1),
    )


def damping_options(damping: str, mu: Any, mu_dec: Any, mu_inc: Any, mu_max: Any) -> tuple:
    """The damping rule's name, ``mu > 0``, ``0 < mu_dec < 1 < mu_inc`` and ``mu <= mu_max``."""
    from .damping import DAMPINGS

    check_choice(damping, "damping", DAMPINGS)
    mu = real(mu, "mu", minimum=0.0, open_min=True)
    mu_max = real(mu_max, "mu_max", minimum=0.0, open_min=True, finite=False)
    if not isinstance(mu, jax.core.Tracer) and not isinstance(mu_max, jax.core.Tracer) and mu > mu_max:
        raise ValueError(
            f"mu must not exceed mu_max (the run would stop before its first step); "
            f"got mu={mu}, mu_max={mu_max}"
        )
    mu_dec = open_interval(mu_dec, "mu_dec", 0.0, 1.0, "it multiplies mu after an accepted step")
    mu_inc = open_interval(mu_inc, "mu_inc", 1.0, np.inf, "it multiplies mu after a rejected step")
    return mu, mu_dec, mu_inc, mu_max


def data(net, loss, params, x, y) -> tuple[jax.Array, jax.Array]:
    """``check_call``: shapes, dtypes (x and y cast to the params' dtype), finiteness when concrete."""
    return check_call(net, loss, params, x, y)


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
