"""The checks of ``fb.train`` and ``fb.train_many`` at the boundary, before anything is compiled.

The optimizer, the key, the gradient, the goal, the mode and its batch size, the validation set and
``(params, x, y)`` (with NaN/Inf in concrete arrays) are checked and normalised once, outside the
compiled run, so that bad input is a ``ValueError``/``TypeError`` naming the argument rather than a
trace from inside ``lax.scan``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import losses as _losses
from .autodiff import value_and_autodiff
from .backprop import value_and_backprop
from .finite import check_finite_named
from .options import as_float, as_int
from .validate import check_call, check_val, require_network

MODES = ("online", "batch", "minibatch")


_DEFAULT_OPTIMIZER: list = []


def _optimizer(optimizer, name: str = "optimizer"):
    """``optimizer`` itself when it is an optax transformation; the default (one shared
    ``optax.sgd(0.1)``, so the default reuses its compiled run) for ``None``."""
    if optimizer is None:
        if not _DEFAULT_OPTIMIZER:
            _DEFAULT_OPTIMIZER.append(optax.sgd(0.1))
        return _DEFAULT_OPTIMIZER[0]
    if isinstance(optimizer, optax.GradientTransformation) or (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        return optimizer
    raise TypeError(
        f"{name} must be an optax GradientTransformation such as optax.sgd(0.1) or optax.adam(1e-3); "
        f"got {optimizer!r} ({type(optimizer).__name__})"
    )


def _is_key(key, batch: int | None = None) -> bool:
    """A typed ``jax.random.key`` array, or a raw ``PRNGKey`` (``uint32`` with a trailing axis of 2),
    of shape ``()`` (``batch=None``) or ``(batch,)``."""
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    lead = () if batch is None else (batch,)
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return tuple(key.shape) == lead
    return dtype == jnp.uint32 and tuple(key.shape) == lead + (2,)


def _check_key(key, name: str = "key"):
    if not _is_key(key):
        got = (
            f"an array of dtype {key.dtype} and shape {tuple(key.shape)}"
            if hasattr(key, "dtype")
            else repr(key)
        )
        raise TypeError(f"{name} must be a jax.random key, e.g. jax.random.key(0); got {got}")
    return key


def _check_gradient(model, gradient):
    if isinstance(gradient, str):
        if gradient not in ("backprop", "autodiff"):
            raise ValueError(
                f"gradient must be 'backprop', 'autodiff' or a (params, x, y) -> (C, grads) callable; "
                f"got {gradient!r}"
            )
        if gradient == "backprop":
            require_network(model, 'fb.train(gradient="backprop")', 'gradient="autodiff"')
        return gradient
    if callable(gradient):
        return gradient
    raise TypeError(
        "gradient must be 'backprop', 'autodiff' or a (params, x, y) -> (C, grads) callable; "
        f"got {gradient!r}"
    )


def _goal(goal) -> float:
    return -np.inf if goal is None else as_float(goal, "goal", finite=False)


def _check_val(model, loss, params, val):
    """``val`` checked statically; its values are read with the training data's, last, in ``_setup``."""
    return check_val(model, loss, params, val, finite=False)


def _setup(model, loss, params, x, y, val, mode, batch_size, key, *, epochs, goal, gradient, values=None):
    """Check the call once, outside the compiled run.

    ``values``: the params whose values the NaN/Inf check reads, when ``params`` are only their shapes
    (``train_many`` checks one run's shapes and all runs' values).

    Returns:
        ``(loss, x, y, val, key, epochs, batch_size, goal, gradient)``, checked and normalised
        (``batch_size`` is ``None`` outside mini-batch mode, so it does not split the cache).
    """
    loss = _losses.get(loss)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    epochs = as_int(epochs, "epochs")
    goal = _goal(goal)
    gradient = _check_gradient(model, gradient)
    x, y = check_call(model, loss, params, x, y, finite=False)
    n = x.shape[0]
    if mode == "minibatch":
        if key is None:
            raise ValueError(
                "mode='minibatch' reshuffles every epoch and needs an explicit key=jax.random.key(...)"
            )
        if batch_size is None:
            raise ValueError(f"mode='minibatch' needs batch_size, an integer from 1 to N = {n}")
        try:
            batch_size = as_int(batch_size, "batch_size", maximum=n)
        except ValueError:
            raise ValueError(
                f"batch_size must be an integer from 1 to N = {n} for mode='minibatch'; got {batch_size!r}"
            ) from None
    elif batch_size is not None:
        steps = "the whole training set" if mode == "batch" else "one example"
        raise ValueError(
            f"batch_size is used only by mode='minibatch'; got batch_size={batch_size!r} with "
            f"mode={mode!r}, whose every step uses {steps}: drop batch_size or use mode='minibatch'"
        )
    if key is not None:
        _check_key(key)
    val = _check_val(model, loss, params, val)
    # the values last, in one fused reduction: every static check above has passed
    check_finite_named(
        {
            "params": params if values is None else values,
            "x": x,
            "y": y,
            **({} if val is None else {"val: x": val[0], "val: y": val[1]}),
        }
    )
    return (
        loss,
        x,
        y,
        val,
        (key if key is not None else jax.random.key(0)),
        epochs,
        batch_size,
        goal,
        gradient,
    )


def _value_and_grad(model, loss, gradient):
    if gradient == "backprop":
        return value_and_backprop(model, loss)
    if gradient == "autodiff":
        return value_and_autodiff(model, loss)
    return gradient
