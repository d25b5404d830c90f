"""Training loops compiled whole: every epoch inside one ``lax.scan``, every step inside another.

The update rule is any optax ``GradientTransformation``; seed 001's gradient descent with
learning rate ``alpha`` (``theta <- theta - alpha dC/dtheta``) is ``optax.sgd(alpha)``.
The modes of learning are seed 002's:

- ``"online"``: one update after each example, in order (N steps an epoch);
- ``"batch"``: one update from the whole training set (1 step an epoch);
- ``"minibatch"``: stochastic; the set is reshuffled every epoch with an explicit key and cut
  into ``N // batch_size`` batches (the remainder of a shuffle is left out of that epoch).

Stopping: a loss goal (``C <= goal`` on the training set; the seeds' "until satisfactory"), or
divergence: the first step whose loss or updated parameters are not finite stops the run, the
parameters stay those before that step (the last finite ones), and ``Result`` says which step. A
non-finite training loss at the end of an epoch whose every step looked finite undoes that epoch
and is reported at its last step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from . import losses as _losses
from .autodiff import value_and_autodiff
from .backprop import value_and_backprop
from .validate import as_apply, check_call

MODES = ("online", "batch", "minibatch")
RUNNING, MAX_EPOCHS, GOAL, DIVERGED = 0, 1, 2, 3
STATUS = {RUNNING: "running", MAX_EPOCHS: "max epochs", GOAL: "loss goal reached", DIVERGED: "diverged"}
#: Floating-point work (6 N P per epoch, summed) above which ``train`` shows a progress bar by
#: default: about 2e10, a couple of seconds on a 2-core CPU.
PROGRESS_WORK = 2e10


class History(NamedTuple):
    """``loss: (epochs + 1,)``: ``loss[0]`` is C on the whole training set before training and
    ``loss[e]`` after epoch e; ``val_loss`` likewise on the validation set (NaN without one).
    Entries after a stop are NaN."""

    loss: jax.Array
    val_loss: jax.Array


class Result(NamedTuple):
    """``status`` codes: 1 max epochs, 2 loss goal reached, 3 diverged (see ``STATUS``).

    ``epochs`` is the number of epochs run; ``diverged_step`` the global step (0-based) whose loss or
    update was not finite, or -1. From ``train_many`` every field has a leading run axis.
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
            return f"{self.status.size} runs: " + ", ".join(f"{c} {STATUS[int(k)]}" for k, c in zip(codes, counts))
        code = int(self.status)
        if code == DIVERGED and int(self.diverged_step) < 0:
            return "diverged: the loss is not finite at the initial parameters"
        if code == DIVERGED:
            return (f"diverged at step {int(self.diverged_step)}; params are those before that step, after "
                    f"{int(self.epochs)} whole epochs (loss {float(self.history.loss[int(self.epochs)]):.4g})")
        return f"{STATUS[code]} after {int(self.epochs)} epochs, loss {float(self.history.loss[int(self.epochs)]):.4g}"


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


def _fit(value_and_grad, cost, optimizer, params, x, y, key, val, *, epochs: int, mode: str,
         batch_size: int, goal: float, on_epochs: Callable | None = None):
    """The whole run as one pure function: a scan over epochs (of a scan over steps).

    Each epoch starts by measuring C on the training set (in batch mode that is the step's own
    forward pass) and checks the stopping rules on it before updating. ``prev`` is kept one step
    behind ``params`` so that a step whose result has a non-finite loss can be undone.
    """
    n = x.shape[0]
    S = _batches(mode, n, batch_size, key).shape[0]  # steps per epoch
    nan = jnp.array(jnp.nan, x.dtype)

    def update(params, opt_state, grads):
        updates, new_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        return new_params, new_state, _tree_finite(new_params)

    def step(carry, i_idx):
        """One mini-batch/online step ``i`` (global index); ``bad``: the first step that diverged, or -1."""
        params, prev, opt_state, bad = carry
        i, idx = i_idx
        C, grads = value_and_grad(params, x[idx], y[idx])
        new_params, new_state, ok = update(params, opt_state, grads)
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
        undo = (status == RUNNING) & ~jnp.isfinite(C0)
        record = jnp.where((status == RUNNING) & ~undo, C0, nan)
        val_record = jnp.where((status == RUNNING) & ~undo, cost(params, *val), nan) if val is not None else nan
        params = _select(undo, prev, params)
        diverged_step = jnp.where(undo, e * S - 1, diverged_step).astype(jnp.int32)
        status = jnp.where(status == RUNNING, jnp.where(undo, DIVERGED, jnp.where(C0 <= goal, GOAL, RUNNING)),
                           status).astype(jnp.int32)
        go = status == RUNNING
        if mode == "batch":
            new_params, new_state, ok = update(params, opt_state, grads)
            take = go & ok
            bad = jnp.where(go & ~ok, e * S, -1)
            prev = _select(take, params, prev)
            params, opt_state = _select(take, new_params, params), _select(take, new_state, opt_state)
        else:
            idx = _batches(mode, n, batch_size, sub)
            steps = e * S + jnp.arange(S, dtype=jnp.int32)
            run = lambda c: jax.lax.scan(step, (*c, jnp.int32(-1)), (steps, idx))[0]
            params, prev, opt_state, bad = jax.lax.cond(go, run, lambda c: (*c, jnp.int32(-1)), (params, prev, opt_state))
        diverged_step = jnp.where(go & (bad >= 0), bad, diverged_step).astype(jnp.int32)
        status = jnp.where(go & (bad >= 0), DIVERGED, status).astype(jnp.int32)
        if on_epochs is not None:  # a host callback (progress bar) every ~1% of the run
            every = max(1, epochs // 100)
            jax.lax.cond((e + 1) % every == 0, lambda: jax.debug.callback(on_epochs, e + 1, record), lambda: None)
        return (params, prev, opt_state, key, status, diverged_step), (record, val_record)

    init = (params, params, optimizer.init(params), key, jnp.int32(RUNNING), jnp.int32(-1))
    (params, prev, _, _, status, diverged_step), (loss, val_loss) = jax.lax.scan(epoch, init, jnp.arange(epochs))
    # the loss after the last epoch, under the same rules
    C_end = cost(params, x, y)
    running = status == RUNNING
    undo = running & ~jnp.isfinite(C_end)
    params = _select(undo, prev, params)
    diverged_step = jnp.where(undo, epochs * S - 1, diverged_step).astype(jnp.int32)
    status = jnp.where(running, jnp.where(undo, DIVERGED, jnp.where(C_end <= goal, GOAL, MAX_EPOCHS)), status)
    loss = jnp.append(loss, jnp.where(running & ~undo, C_end, nan))
    val_end = jnp.where(running & ~undo, cost(params, *val), nan) if val is not None else nan
    val_loss = jnp.append(val_loss, val_end)
    epochs_run = jnp.maximum(jnp.sum(~jnp.isnan(loss)) - 1, 0).astype(jnp.int32)  # loss[epochs] is the params' loss
    return Result(params, History(loss, val_loss), status.astype(jnp.int32), epochs_run, diverged_step)


def _setup(model, loss, params, x, y, val, mode, batch_size, key):
    """Check the call once, outside the compiled run; returns the checked data and a key."""
    loss = _losses.get(loss)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    x, y = check_call(model, loss, params, x, y)
    if mode == "minibatch":
        if key is None:
            raise ValueError("mode='minibatch' reshuffles every epoch and needs an explicit key=jax.random.key(...)")
        if not (isinstance(batch_size, int) and 1 <= batch_size <= x.shape[0]):
            raise ValueError(f"batch_size must be an integer from 1 to N = {x.shape[0]} for mode='minibatch'; got {batch_size!r}")
    if val is not None:
        val = check_call(model, loss, params, *val)
    return x, y, val, (key if key is not None else jax.random.key(0))


def _value_and_grad(model, loss, gradient):
    if gradient == "backprop":
        return value_and_backprop(model, loss)
    if gradient == "autodiff":
        return value_and_autodiff(model, loss)
    if callable(gradient):
        return gradient
    raise ValueError(f"gradient must be 'backprop', 'autodiff' or a (params, x, y) -> (C, grads) callable; got {gradient!r}")


def train(model, loss, params, x, y, optimizer: optax.GradientTransformation = None, *, epochs: int,
          mode: str = "batch", batch_size: int | None = None, key=None, goal: float = 0.0,
          val: tuple | None = None, gradient: str | Callable = "backprop", data_parallel: bool = False,
          progress: bool | None = None) -> Result:
    """Train ``params`` of ``model`` on ``(x, y)``; one compiled program for the whole run.

    ``optimizer``: any optax transformation (default ``optax.sgd(0.1)``); ``gradient``: the
    hand-written ``"backprop"`` (default), ``"autodiff"`` (jax.grad) or any
    ``(params, x, y) -> (C, grads)``; ``val``: optional ``(x_val, y_val)`` recorded each epoch;
    ``data_parallel``: split the batch over all local devices (``shard_batch``); ``progress``: a
    tqdm bar fed from inside the compiled run (default: on when the run is long, see ``PROGRESS_WORK``).
    """
    optimizer = optimizer or optax.sgd(0.1)
    x, y, val, key = _setup(model, loss, params, x, y, val, mode, batch_size, key)
    if data_parallel:
        x, y = shard_batch(x, y)
    config = (model, _losses.get(loss), gradient, optimizer, False, epochs, mode, batch_size or x.shape[0], goal)
    n_params = sum(l.size for l in jax.tree.leaves(params))
    if progress or (progress is None and 6 * x.shape[0] * n_params * epochs > PROGRESS_WORK):
        with tqdm(total=epochs, unit="epoch", desc="train", leave=False) as bar:
            def on_epochs(done, loss):
                bar.update(max(0, int(done) - bar.n))  # callbacks may arrive out of order
                bar.set_postfix(loss=f"{float(loss):.4g}")

            result = jax.block_until_ready(_compiled.__wrapped__(*config, vmapped=False, on_epochs=on_epochs)(
                params, x, y, key, val, None))  # not cached: the callback belongs to this bar
        return result
    return _compiled(*config, vmapped=False)(params, x, y, key, val, None)


def train_many(model, loss, params, x, y, optimizer: optax.GradientTransformation | Callable = None, *,
               epochs: int, hyper: jax.Array | None = None, keys=None, mode: str = "batch",
               batch_size: int | None = None, goal: float = 0.0, val: tuple | None = None,
               gradient: str | Callable = "backprop") -> Result:
    """K independent runs vmapped into one compiled call; returns stacked params and histories.

    ``params``: stacked, every leaf with a leading K axis (``init_many``). ``optimizer`` is one
    transformation for all runs, or a function ``h -> GradientTransformation`` of one entry of
    ``hyper: (K,)`` (a learning-rate grid: ``optimizer=optax.sgd, hyper=jnp.array([...])``).
    ``keys``: ``(K,)`` keys for mini-batch shuffling (default: split from key 0).
    """
    first = jax.tree.map(lambda l: l[0], params)
    K = jax.tree.leaves(params)[0].shape[0]
    x, y, val, key = _setup(model, loss, first, x, y, val, mode, batch_size,
                            keys[0] if keys is not None else jax.random.key(0))
    keys = keys if keys is not None else jax.random.split(key, K)
    if hyper is None:
        optimizer = optimizer if optimizer is not None else optax.sgd(0.1)
        hyper = jnp.zeros(K)
    elif not callable(optimizer) or isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("with hyper=..., optimizer must be a function h -> GradientTransformation, e.g. optax.sgd")
    factory = not isinstance(optimizer, optax.GradientTransformation)
    fit = _compiled(model, _losses.get(loss), gradient, optimizer, factory, epochs, mode, batch_size or x.shape[0], goal, vmapped=True)
    params, keys, hyper = shard_runs((params, keys, jnp.asarray(hyper)))
    return fit(params, x, y, keys, val, hyper)


@functools.lru_cache(maxsize=64)
def _compiled(model, loss, gradient, optimizer, factory: bool, epochs, mode, batch_size, goal, vmapped, on_epochs=None):
    """The jitted run for one static configuration, kept so that repeated calls reuse it (one
    optimizer object, or one factory ``h -> GradientTransformation`` when ``factory``, compiles once)."""
    make = optimizer if factory else (lambda h: optimizer)
    value_and_grad = _value_and_grad(model, loss, gradient)
    apply = as_apply(model)
    cost = lambda p, x, y: loss(apply(p, x), y)

    def one(p, x, y, k, val, h):
        return _fit(value_and_grad, cost, make(h), p, x, y, k, val, epochs=epochs, mode=mode,
                    batch_size=batch_size, goal=goal, on_epochs=on_epochs)

    if vmapped:
        return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0, None, 0)))
    return jax.jit(one)


def shard_batch(x, y):
    """Seed 002's "multithreaded backpropagation": split the batch over every local device.

    Each device runs forward and backward on its rows; the sums over the batch in
    ``dW = delta.T @ a`` and ``db = sum(delta)`` become per-device partial sums that XLA adds
    across devices (an all-reduce): "sum the deltas". Parameters stay replicated. The same code
    runs unchanged on one device. N must divide evenly by the number of devices.
    """
    devices = jax.local_devices()
    if len(devices) == 1:
        return x, y
    if x.shape[0] % len(devices):
        raise ValueError(f"data_parallel: the batch of {x.shape[0]} examples does not split evenly over {len(devices)} devices")
    sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def shard_runs(tree):
    """Spread the leading (run) axis over every local device when it divides evenly: independent
    runs need no communication, so each device (each core with ``--xla_force_host_platform_device_count``)
    trains its share. Unchanged on one device or when the split is uneven."""
    devices = jax.local_devices()
    K = jax.tree.leaves(tree)[0].shape[0]
    if len(devices) == 1 or K % len(devices) or any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(tree)):
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    return jax.device_put(tree, sharding)


def init_many(net, key, k: int, dtype=None):
    """``k`` independent initialisations, stacked on a leading axis (for ``train_many``)."""
    return jax.vmap(lambda kk: net.init(kk, dtype))(jax.random.split(key, k))


def full_batch(value_and_grad: Callable, optimizer: optax.GradientTransformation, params, x, y, steps: int):
    """``steps`` full-batch updates; returns ``(params, losses)`` with ``losses[t] = C`` before step t.

    The bare loop (no checks, no stopping rule): ``value_and_grad(params, x, y) -> (C, grads)``.
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
