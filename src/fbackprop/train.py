"""Training loops compiled whole: every epoch inside one ``lax.scan``, every step inside another.

The update rule is any optax ``GradientTransformation``; plain gradient descent with learning rate
``alpha`` (``theta <- theta - alpha dC/dtheta``, Rumelhart, Hinton & Williams 1986) is
``optax.sgd(alpha)``. The modes of learning:

- ``"online"``: one update after each example, in order (N steps an epoch);
- ``"batch"``: one update from the whole training set (1 step an epoch);
- ``"minibatch"``: stochastic; the set is reshuffled every epoch with an explicit key and cut
  into ``N // batch_size`` batches (the remainder of a shuffle is left out of that epoch).

Stopping: a loss goal (``C <= goal`` on the training set), or divergence: the first step whose
loss or updated parameters are not finite stops the run, the parameters stay those before that
step (the last finite ones), and ``Result`` says which step. A non-finite training loss at the end
of an epoch whose every step looked finite undoes that epoch and is reported at its last step. A
loss that is not finite before any step (``Status.NONFINITE_START``) trains nothing.

Status codes are the package's (``fbackprop.status``): ``RUNNING``, ``MAX_EPOCHS``, ``GOAL``,
``DIVERGED`` and ``STATUS`` here are re-exports of ``Status`` and ``MESSAGES``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from . import losses as _losses
from .autodiff import value_and_autodiff
from .backprop import value_and_backprop
from .status import MESSAGES, Status
from .validate import as_apply, as_float, as_int, check_call, check_finite_named, require_network

MODES = ("online", "batch", "minibatch")
RUNNING, MAX_EPOCHS, GOAL, DIVERGED = Status.RUNNING, Status.MAX_EPOCHS, Status.GOAL, Status.DIVERGED
NONFINITE_START = Status.NONFINITE_START
STATUS = MESSAGES  # the old name of the table: int(status) -> message
_RUNNING, _MAX_EPOCHS, _GOAL, _DIVERGED, _NONFINITE_START = map(
    int, (RUNNING, MAX_EPOCHS, GOAL, DIVERGED, NONFINITE_START)
)
#: Floating-point work (6 N P per epoch, summed) above which ``train`` shows a progress bar by
#: default: about 2e10, a couple of seconds on a 2-core CPU.
PROGRESS_WORK = 2e10


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
):
    """The whole run as one pure function: a scan over epochs (of a scan over steps).

    Each epoch starts by measuring C on the training set (in batch mode that is the step's own
    forward pass) and checks the stopping rules on it before updating. ``prev`` is kept one step
    behind ``params`` so that a step whose result has a non-finite loss can be undone. A
    non-finite C before the first epoch stops the run with ``NONFINITE_START``.
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
            new_params, new_state, ok = update(params, opt_state, grads)
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
    if val is None:
        return None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        if isinstance(val, (tuple, list)):
            got = f"a {type(val).__name__} of length {len(val)}"
        elif hasattr(val, "shape"):
            got = f"an array of shape {tuple(val.shape)}"
        else:
            got = f"{val!r} ({type(val).__name__})"
        raise TypeError(f"val must be a pair (x_val, y_val) of validation inputs and targets; got {got}")
    try:
        return check_call(model, loss, params, *val, finite=False)
    except (TypeError, ValueError) as err:
        raise type(err)(f"val=(x_val, y_val): {err}") from None


def _setup(model, loss, params, x, y, val, mode, batch_size, key, *, epochs, goal, gradient):
    """Check the call once, outside the compiled run.

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
            "params": params,
            "x": x,
            "y": y,
            **({} if val is None else {"val=(x_val, y_val): x": val[0], "val=(x_val, y_val): y": val[1]}),
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


def train(
    model,
    loss,
    params,
    x,
    y,
    optimizer: optax.GradientTransformation = None,
    *,
    epochs: int,
    mode: str = "batch",
    batch_size: int | None = None,
    key=None,
    goal: float | None = 0.0,
    val: tuple | None = None,
    gradient: str | Callable = "backprop",
    data_parallel: bool = False,
    progress: bool | None = None,
) -> Result:
    """Train ``params`` of ``model`` on ``(x, y)``; one compiled program for the whole run.

    Every argument is checked before anything is compiled: shapes, dtypes, option values, and
    NaN/Inf in concrete ``params``, ``x``, ``y`` and ``val`` (a ``ValueError`` naming the array and
    the index). Under ``jit`` the values cannot be seen: a run whose loss is not finite at the start
    then returns ``status == Status.NONFINITE_START`` having trained nothing.

    Compiled programs are cached on what determines them: the model, the loss, the gradient, the
    optimizer *object*, ``epochs``, ``mode``, ``batch_size``, ``goal`` (and, as ``jax.jit`` does,
    the shapes and dtypes of the data). An optax transformation is an opaque pair of closures, so
    two ``optax.adam(1e-3)`` objects are different programs: build the optimizer once and pass the
    same object to every call (``adam = optax.adam(1e-3)`` outside the loop), and repeated calls
    with new params or data of the same shapes compile nothing.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x)`` callable (then use
            ``gradient="autodiff"``).
        loss: a loss name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``) or ``Loss``.
        params: a tuple of ``{"W", "b"}`` dicts (``net.init``) or any pytree ``model`` takes; their
            floating dtype is the computation's dtype (``x``, ``y`` and ``val`` are cast to it;
            integer or mixed-dtype leaves are refused).
        x: inputs ``(N, n_in)``, one example per row.
        y: targets ``(N, n_out)``, or integer labels ``(N,)`` for ``cross_entropy``.
        optimizer: an optax ``GradientTransformation`` (default: one shared ``optax.sgd(0.1)``).
        epochs: passes over the training set, a positive integer.
        mode: ``"batch"`` (default), ``"online"`` or ``"minibatch"``.
        batch_size: examples per step, ``1 <= batch_size <= N``; only (and always) with
            ``mode="minibatch"``.
        goal: stop once ``C <= goal`` on the training set (default 0.0); ``None``: no goal.
        val: optional ``(x_val, y_val)``; its loss is recorded every epoch in ``history.val_loss``.
        gradient: ``"backprop"`` (default, hand-written; needs a ``Network``), ``"autodiff"``
            (``jax.grad``) or any ``(params, x, y) -> (C, grads)`` callable.
        key: a ``jax.random`` key for the reshuffles (required with ``mode="minibatch"``).
        data_parallel: split the batch over all local devices (``shard_batch``; default False).
        progress: a tqdm bar fed from inside the compiled run (default ``None``: on when the run is
            long, see ``PROGRESS_WORK``).

    Returns:
        ``Result(params, history, status, epochs, diverged_step)``; ``result.message`` says why it stopped.

    Raises:
        ValueError: for bad values (shapes, ``epochs=-1``, ``batch_size`` outside mini-batch mode,
            NaN/Inf in concrete inputs, ...).
        TypeError: for bad types (``optimizer=0.1``, ``key=0``, ``val=x``, integer params, ...).

    Example:
        >>> adam = optax.adam(1e-2)                        # once: each new object compiles anew
        >>> r = fb.train(net, "cross_entropy", params, x, labels, adam, epochs=200)
        >>> r.message, r.history.loss[-1]
    """
    optimizer = _optimizer(optimizer)
    loss, x, y, val, key, epochs, batch_size, goal, gradient = _setup(
        model, loss, params, x, y, val, mode, batch_size, key, epochs=epochs, goal=goal, gradient=gradient
    )
    if data_parallel:
        x, y = shard_batch(x, y)
    config = (model, loss, gradient, optimizer, False, epochs, mode, batch_size, goal)
    n_params = sum(l.size for l in jax.tree.leaves(params))
    if progress or (progress is None and 6 * x.shape[0] * n_params * epochs > PROGRESS_WORK):
        with tqdm(total=epochs, unit="epoch", desc="train", leave=False) as bar:
            _BARS.append(bar)
            try:
                return jax.block_until_ready(
                    _compiled(*config, vmapped=False, progress=True)(params, x, y, key, val, None)
                )
            finally:
                _BARS.remove(bar)
    return _compiled(*config, vmapped=False)(params, x, y, key, val, None)


def train_many(
    model,
    loss,
    params,
    x,
    y,
    optimizer: optax.GradientTransformation | Callable = None,
    *,
    epochs: int,
    hyper: jax.Array | None = None,
    keys=None,
    mode: str = "batch",
    batch_size: int | None = None,
    goal: float | None = 0.0,
    val: tuple | None = None,
    gradient: str | Callable = "backprop",
) -> Result:
    """K independent runs vmapped into one compiled call; returns stacked params and histories.

    The same checks as ``train``, on the first run's params (and the stacking of the others).
    Programs are cached as in ``train``: pass the same optimizer object (or factory) again.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x)`` callable (then use
            ``gradient="autodiff"``).
        loss: a loss name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``) or ``Loss``.
        params: stacked: every leaf with a leading K axis (``init_many``); their floating dtype is
            the computation's dtype (``x``, ``y`` and ``val`` are cast to it; integer or
            mixed-dtype leaves are refused).
        x: inputs ``(N, n_in)``, one example per row.
        y: targets ``(N, n_out)``, or integer labels ``(N,)`` for ``cross_entropy``.
        optimizer: one optax transformation for all runs (default ``optax.sgd(0.1)``), or
            with ``hyper``, a function ``h -> GradientTransformation`` of one entry of
            ``hyper`` (``optimizer=optax.sgd, hyper=jnp.array([...])``: a learning-rate grid).
        epochs: passes over the training set, a positive integer.
        mode: ``"batch"`` (default), ``"online"`` or ``"minibatch"``.
        batch_size: examples per step, ``1 <= batch_size <= N``; only (and always) with
            ``mode="minibatch"``.
        goal: stop once ``C <= goal`` on the training set (default 0.0); ``None``: no goal.
        val: optional ``(x_val, y_val)``; its loss is recorded every epoch in ``history.val_loss``.
        gradient: ``"backprop"`` (default, hand-written; needs a ``Network``), ``"autodiff"``
            (``jax.grad``) or any ``(params, x, y) -> (C, grads)`` callable.
        hyper: ``(K,)`` hyperparameters, one per run, passed to the ``optimizer`` factory.
        keys: ``(K,)`` keys for mini-batch shuffling (default: split from ``jax.random.key(0)``).

    Returns:
        A ``Result`` whose every field has a leading K axis.

    Raises:
        ValueError, TypeError: as ``train``; also for params that are not stacked, or ``hyper`` or
            ``keys`` without K entries.
    """
    leaves = jax.tree.leaves(params)
    leading = {tuple(jnp.shape(l)[:1]) for l in leaves}
    if not leaves or len(leading) != 1 or () in leading:
        raise ValueError(
            f"train_many: params must be stacked, every leaf with the same leading run axis K "
            f"(fb.init_many(net, key, K)); got leading sizes {sorted(s[0] if s else None for s in leading)}"
        )
    K = jnp.shape(leaves[0])[0]
    first = jax.tree.map(lambda l: l[0], params)
    if keys is not None and not _is_key(keys, K):
        got = f"dtype {keys.dtype}, shape {tuple(keys.shape)}" if hasattr(keys, "dtype") else repr(keys)
        raise TypeError(
            f"keys must hold K = {K} jax.random keys, e.g. jax.random.split(jax.random.key(0), {K}); "
            f"got {got}"
        )
    loss, x, y, val, key, epochs, batch_size, goal, gradient = _setup(
        model,
        loss,
        first,
        x,
        y,
        val,
        mode,
        batch_size,
        keys[0] if keys is not None else jax.random.key(0),
        epochs=epochs,
        goal=goal,
        gradient=gradient,
    )
    keys = keys if keys is not None else jax.random.split(key, K)
    dtype = x.dtype
    if hyper is None:
        optimizer = _optimizer(optimizer)
        hyper = jnp.zeros(K, dtype)
    else:
        if not callable(optimizer) or isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                "with hyper=..., optimizer must be a function h -> GradientTransformation, e.g. optax.sgd; "
                f"got {optimizer!r}"
            )
        if jnp.shape(hyper) != (K,):
            raise ValueError(f"hyper must hold one value per run: shape ({K},); got shape {jnp.shape(hyper)}")
        hyper = jnp.asarray(hyper, dtype)
    factory = not isinstance(optimizer, optax.GradientTransformation)
    fit = _compiled(model, loss, gradient, optimizer, factory, epochs, mode, batch_size, goal, vmapped=True)
    params, keys, hyper = shard_runs((params, keys, hyper))
    return fit(params, x, y, keys, val, hyper)


_BARS: list = []  # the progress bars of the runs in flight (the newest gets the compiled run's callbacks)


def _on_epochs(done, loss):
    """The compiled run's host callback: move the current progress bar (one program serves every bar)."""
    if _BARS:
        bar = _BARS[-1]
        bar.update(max(0, int(done) - bar.n))  # callbacks may arrive out of order
        bar.set_postfix(loss=f"{float(loss):.4g}")


@functools.lru_cache(maxsize=64)
def _compiled(
    model,
    loss,
    gradient,
    optimizer,
    factory: bool,
    epochs,
    mode,
    batch_size,
    goal,
    vmapped,
    progress: bool = False,
):
    """The jitted run for one static configuration, kept so that repeated calls reuse it.

    The key is what determines the program: the model, the loss, the gradient, the optimizer
    object (or the factory ``h -> GradientTransformation`` when ``factory``), ``epochs``, ``mode``,
    ``batch_size`` (``None`` outside mini-batch mode), ``goal``, whether runs are vmapped and whether
    a progress bar is fed. Shapes and dtypes are ``jax.jit``'s own cache.
    """
    make = optimizer if factory else (lambda h: optimizer)
    value_and_grad = _value_and_grad(model, loss, gradient)
    apply = as_apply(model)
    cost = lambda p, x, y: loss(apply(p, x), y)

    def one(p, x, y, k, val, h):
        return _fit(
            value_and_grad,
            cost,
            make(h),
            p,
            x,
            y,
            k,
            val,
            epochs=epochs,
            mode=mode,
            batch_size=batch_size,
            goal=goal,
            on_epochs=_on_epochs if progress else None,
        )

    if vmapped:
        return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0, None, 0)))
    return jax.jit(one)


def shard_batch(x, y):
    """Data parallelism: split the batch over every local device ("sum the deltas").

    Each device runs forward and backward on its rows; the sums over the batch in
    ``dW = delta.T @ a`` and ``db = sum(delta)`` become per-device partial sums that XLA adds
    across devices (an all-reduce). Parameters stay replicated. The same code runs unchanged on
    one device.

    Args:
        x: inputs ``(N, n_in)``.
        y: targets with N rows.

    Returns:
        ``(x, y)`` placed with their rows split over the devices (unchanged on one device).

    Raises:
        ValueError: when N does not divide evenly by the number of devices.
    """
    devices = jax.local_devices()
    if len(devices) == 1:
        return x, y
    if x.shape[0] % len(devices):
        raise ValueError(
            f"data_parallel: the batch of {x.shape[0]} examples does not split evenly over "
            f"{len(devices)} devices"
        )
    sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def shard_runs(tree):
    """Spread the leading (run) axis over every local device when it divides evenly.

    Independent runs need no communication, so each device (each core with
    ``--xla_force_host_platform_device_count``) trains its share.

    Args:
        tree: a pytree whose leaves share a leading run axis K.

    Returns:
        The tree, placed over the devices; unchanged on one device, when K does not divide evenly,
        or under ``jit``.
    """
    devices = jax.local_devices()
    K = jax.tree.leaves(tree)[0].shape[0]
    if (
        len(devices) == 1
        or K % len(devices)
        or any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(tree))
    ):
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    return jax.device_put(tree, sharding)


def init_many(net, key, k: int, dtype=None):
    """``k`` independent initialisations, stacked on a leading axis (for ``train_many``).

    Args:
        net: a ``Network``.
        key: a ``jax.random`` key, split into ``k``.
        k: the number of runs, a positive integer.
        dtype: the parameters' dtype (default as ``net.init``).

    Returns:
        ``net.init``'s tree with a leading ``k`` axis on every leaf.
    """
    k = as_int(k, "k")
    return jax.vmap(lambda kk: net.init(kk, dtype))(jax.random.split(key, k))


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
