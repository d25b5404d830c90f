"""The compiled training loop: every epoch inside one ``lax.scan``, every step inside another.

``_fit`` is the whole run as one pure function of ``(params, x, y, key, val)``: the modes of
learning (``_batches``), the stopping rules (a loss goal, divergence, a non-finite start) and the
loss curve; ``History`` and ``Result`` are what it returns. It does no checking: ``fb.train``
(``fbackprop.train``) checks the call and caches the compiled program. ``full_batch`` is the bare
loop beside it (no checks, no stopping rule), the floor the benchmarks measure ``train`` against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .options import as_int
from .status import MESSAGES, Status

_RUNNING, _MAX_EPOCHS, _GOAL, _DIVERGED, _NONFINITE_START = map(
    int, (Status.RUNNING, Status.MAX_EPOCHS, Status.GOAL, Status.DIVERGED, Status.NONFINITE_START)
)


class History(NamedTuple):
    """The loss curve of a run.

    Attributes:
        loss: ``(epochs + 1,)``: ``loss[0]`` is C on the whole training set before training and
            ``loss[e]`` after epoch e; entries after a stop are NaN.
        val_loss: likewise on the validation set (all NaN without ``val``).
    """

    loss: jax.Array
    val_loss: jax.Array


class Result(NamedTuple):
    """What ``train`` returns (from ``train_many`` every field has a leading run axis).

    Attributes:
        params: the trained parameters (the last finite ones when the run diverged).
        history: the ``History`` of losses.
        status: an ``int32`` code of ``fbackprop.status.Status``: ``MAX_EPOCHS`` (1), ``GOAL`` (2),
            ``DIVERGED`` (3) or ``NONFINITE_START`` (8); ``MESSAGES[int(status)]`` says it in words.
        epochs: the number of epochs run.
        diverged_step: the global step (0-based) whose loss or update was not finite, or -1.
    """

    params: Any
    history: History
    status: jax.Array
    epochs: jax.Array
    diverged_step: jax.Array

    @property
    def message(self) -> str:
        """One line saying why the run stopped (for ``train_many``'s results: how many runs stopped how)."""
        if jnp.ndim(self.status):
            codes, counts = np.unique(np.asarray(self.status), return_counts=True)
            return f"{self.status.size} runs: " + ", ".join(
                f"{c} {MESSAGES[int(k)]}" for k, c in zip(codes, counts)
            )
        code = int(self.status)
        if code == _NONFINITE_START:
            return (
                "stopped before training: the loss is not finite at the initial parameters (params, x or y "
                "hold NaN/Inf, which fb.train refuses outside jit but cannot see under jit, or the loss "
                "overflows at these parameters)"
            )
        if code == _DIVERGED:
            return (
                f"diverged at step {int(self.diverged_step)}; params are those before that step, after "
                f"{int(self.epochs)} whole epochs (loss {float(self.history.loss[int(self.epochs)]):.4g})"
            )
        loss = float(self.history.loss[int(self.epochs)])
        return f"{MESSAGES[code]} after {int(self.epochs)} epochs, loss {loss:.4g}"


def _tree_finite(tree) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(tree)]))


def _select(pred, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def _batches(mode: str, n: int, batch_size: int, key) -> jax.Array:
    """Example indices of one epoch's steps: ``(steps, examples per step)``."""
    if mode == "batch":
        return jnp.arange(n)[None, :]
    if mode == "online":
        return jnp.arange(n)[:, None]
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def _fit(
    value_and_grad,
    cost,
    optimizer,
    params,
    x,
    y,
    key,
    val,
    *,
    epochs: int,
    mode: str,
    batch_size: int,
    goal: float,
    on_epochs: Callable | None = None,
    spread=None,
):
    """The whole run as one pure function: a scan over epochs (of a scan over steps).

    Each epoch starts by measuring C on the training set (in batch mode that is the step's own
    forward pass) and checks the stopping rules on it before updating. ``prev`` is kept one step
    behind ``params`` so that a step whose result has a non-finite loss can be undone. A
    non-finite C before the first epoch stops the run with ``NONFINITE_START``. ``spread``: where to
    place each mini-batch (its rows over the devices, ``sharding.batch_sharding``), or ``None``.
    """
    n = x.shape[0]
    S = _batches(mode, n, batch_size, key).shape[0]  # steps per epoch
    nan = jnp.array(jnp.nan, x.dtype)

    optimizer = optax.with_extra_args_support(optimizer)  # the batch goes to those that take it (fb.kfac)

    def update(params, opt_state, grads, xb, yb):
        updates, new_state = optimizer.update(grads, opt_state, params, x=xb, y=yb)
        new_params = optax.apply_updates(params, updates)
        return new_params, new_state, _tree_finite(new_params)

    def step(carry, i_idx):
        """One mini-batch/online step ``i`` (global index); ``bad``: the first step that diverged, or -1."""
        params, prev, opt_state, bad = carry
        i, idx = i_idx
        xb, yb = x[idx], y[idx]
        if spread is not None:  # static: the mini-batch split over the devices like the batch
            xb, yb = (jax.lax.with_sharding_constraint(a, spread) for a in (xb, yb))
        C, grads = value_and_grad(params, xb, yb)
        new_params, new_state, ok = update(params, opt_state, grads, xb, yb)
        live = bad < 0
        undo = live & ~jnp.isfinite(C) & (i > 0)  # the previous step's result has a non-finite loss
        take = live & ~undo & ok
        bad = jnp.where(undo, i - 1, jnp.where(live & ~ok, i, bad)).astype(jnp.int32)
        params, prev = _select(undo, prev, params), _select(take, params, prev)
        return (_select(take, new_params, params), prev, _select(take, new_state, opt_state), bad), None

    def epoch(carry, e):
        params, prev, opt_state, key, status, diverged_step = carry
        sub = key
        if mode == "minibatch":  # only the reshuffle draws random numbers
            key, sub = jax.random.split(key)
        if mode == "batch":
            C0, grads = value_and_grad(params, x, y)
        else:
            C0 = cost(params, x, y)
        # stopping rules on the loss after the previous epoch; an undone epoch is not recorded
        undo = (status == _RUNNING) & ~jnp.isfinite(C0)
        record = jnp.where((status == _RUNNING) & ~undo, C0, nan)
        val_record = (
            jnp.where((status == _RUNNING) & ~undo, cost(params, *val), nan) if val is not None else nan
        )
        params = _select(undo, prev, params)
        diverged_step = jnp.where(undo, e * S - 1, diverged_step).astype(jnp.int32)
        status = jnp.where(
            status == _RUNNING,
            jnp.where(
                undo, jnp.where(e == 0, _NONFINITE_START, _DIVERGED), jnp.where(C0 <= goal, _GOAL, _RUNNING)
            ),
            status,
        ).astype(jnp.int32)
        go = status == _RUNNING
        if mode == "batch":
            new_params, new_state, ok = update(params, opt_state, grads, x, y)
            take = go & ok
            bad = jnp.where(go & ~ok, e * S, -1)
            prev = _select(take, params, prev)
            params, opt_state = _select(take, new_params, params), _select(take, new_state, opt_state)
        else:
            idx = _batches(mode, n, batch_size, sub)
            steps = e * S + jnp.arange(S, dtype=jnp.int32)
            run = lambda c: jax.lax.scan(step, (*c, jnp.int32(-1)), (steps, idx))[0]
            params, prev, opt_state, bad = jax.lax.cond(
                go, run, lambda c: (*c, jnp.int32(-1)), (params, prev, opt_state)
            )
        diverged_step = jnp.where(go & (bad >= 0), bad, diverged_step).astype(jnp.int32)
        status = jnp.where(go & (bad >= 0), _DIVERGED, status).astype(jnp.int32)
        if on_epochs is not None:  # a host callback (progress bar) every ~1% of the run
            every = max(1, epochs // 100)
            jax.lax.cond(
                (e + 1) % every == 0, lambda: jax.debug.callback(on_epochs, e + 1, record), lambda: None
            )
        return (params, prev, opt_state, key, status, diverged_step), (record, val_record)

    init = (params, params, optimizer.init(params), key, jnp.int32(_RUNNING), jnp.int32(-1))
    (params, prev, _, _, status, diverged_step), (loss, val_loss) = jax.lax.scan(
        epoch, init, jnp.arange(epochs)
    )
    # the loss after the last epoch, under the same rules
    C_end = cost(params, x, y)
    running = status == _RUNNING
    undo = running & ~jnp.isfinite(C_end)
    params = _select(undo, prev, params)
    diverged_step = jnp.where(undo, epochs * S - 1, diverged_step).astype(jnp.int32)
    status = jnp.where(
        running, jnp.where(undo, _DIVERGED, jnp.where(C_end <= goal, _GOAL, _MAX_EPOCHS)), status
    )
    loss = jnp.append(loss, jnp.where(running & ~undo, C_end, nan))
    val_end = jnp.where(running & ~undo, cost(params, *val), nan) if val is not None else nan
    val_loss = jnp.append(val_loss, val_end)
    # loss[epochs] is the params' loss
    epochs_run = jnp.maximum(jnp.sum(~jnp.isnan(loss)) - 1, 0).astype(jnp.int32)
    return Result(params, History(loss, val_loss), status.astype(jnp.int32), epochs_run, diverged_step)


def full_batch(value_and_grad: Callable, optimizer: optax.GradientTransformation, params, x, y, steps: int):
    """``steps`` full-batch updates: the bare loop (no checks, no stopping rule).

    Args:
        value_and_grad: ``(params, x, y) -> (C, grads)``, e.g. ``fb.value_and_backprop(net, loss)``.
        optimizer: an optax ``GradientTransformation``.
        params: the initial parameters.
        x: inputs ``(N, n_in)``.
        y: targets.
        steps: the number of updates, a positive integer.

    Returns:
        ``(params, losses)`` with ``losses: (steps,)``, ``losses[t] = C`` before step t.
    """
    steps = as_int(steps, "steps")
    optimizer = optax.with_extra_args_support(optimizer)  # the batch goes to those that take it (fb.kfac)

    @jax.jit
    def run(params, x, y):
        def step(carry, _):
            params, opt_state = carry
            C, grads = value_and_grad(params, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, params, x=x, y=y)
            return (optax.apply_updates(params, updates), opt_state), C

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
        return params, losses

    return run(params, x, y)
