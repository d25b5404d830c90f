"""Training loops compiled whole: every step inside one ``lax.scan``.

The update rule is any optax ``GradientTransformation``; gradient descent with learning rate
``alpha`` (seed 001's fifth equation, ``theta <- theta - alpha dC/dtheta``) is ``optax.sgd(alpha)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import optax


def full_batch(value_and_grad: Callable, optimizer: optax.GradientTransformation, params, x, y, steps: int):
    """``steps`` full-batch updates; returns ``(params, losses)`` with ``losses[t] = C`` before step t.

    ``value_and_grad(params, x, y) -> (C, grads)``: ``fb.value_and_backprop(net, loss)`` or
    ``fb.value_and_autodiff(net, loss)``.
    """

    @jax.jit
    def run(params, x, y):
        def step(carry, _):
            params, opt_state = carry
            C, grads = value_and_grad(params, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), C

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
        return params, losses

    return run(params, x, y)
