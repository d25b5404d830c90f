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

This module is the public entry point (the checked, cached runs); the loop itself is in
``fbackprop.train_loop``, the checks of the call in ``fbackprop.train_checks`` and the placement
over devices in ``fbackprop.sharding``. Their names that code imports from here (``History``,
``Result``, ``full_batch``, ``shard_batch``, ``shard_runs``, ``MODES``) are re-exported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

from .options import as_int
from .sharding import batch_sharding, shard_batch, shard_runs
from .status import MESSAGES, Status
from .train_checks import MODES, _is_key, _optimizer, _setup, _value_and_grad
from .train_loop import History, Result, _fit, full_batch
from .validate import as_apply

__all__ = ["History", "MODES", "Result", "full_batch", "init_many", "shard_batch", "shard_runs"]
__all__ += ["train", "train_many", "PROGRESS_WORK", "STATUS"]
__all__ += ["RUNNING", "MAX_EPOCHS", "GOAL", "DIVERGED", "NONFINITE_START"]

RUNNING, MAX_EPOCHS, GOAL, DIVERGED = Status.RUNNING, Status.MAX_EPOCHS, Status.GOAL, Status.DIVERGED
NONFINITE_START = Status.NONFINITE_START
STATUS = MESSAGES  # the old name of the table: int(status) -> message

#: Floating-point work (6 N P per epoch, summed) above which ``train`` shows a progress bar by
#: default: about 2e10, a couple of seconds on a 2-core CPU.
PROGRESS_WORK = 2e10


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

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> sgd = optax.sgd(0.1)   # made once: each new optimizer object compiles anew
        >>> r = fb.train(net, "squared_error", params, x, y, sgd, epochs=5)
        >>> r.params[0]["W"].shape, isinstance(r.message, str)
        ((3, 2), True)
    """
    optimizer = _optimizer(optimizer)
    loss, x, y, val, key, epochs, batch_size, goal, gradient = _setup(
        model, loss, params, x, y, val, mode, batch_size, key, epochs=epochs, goal=goal, gradient=gradient
    )
    if data_parallel:
        x, y = shard_batch(x, y)
    spread = batch_sharding(x, batch_size) if mode == "minibatch" else None
    config = (model, loss, gradient, optimizer, False, epochs, mode, batch_size, goal)
    n_params = sum(l.size for l in jax.tree.leaves(params))
    if progress or (progress is None and 6 * x.shape[0] * n_params * epochs > PROGRESS_WORK):
        with tqdm(total=epochs, unit="epoch", desc="train", leave=False) as bar:
            _BARS.append(bar)
            try:
                return jax.block_until_ready(
                    _compiled(*config, vmapped=False, progress=True, spread=spread)(
                        params, x, y, key, val, None
                    )
                )
            finally:
                _BARS.remove(bar)
    return _compiled(*config, vmapped=False, spread=spread)(params, x, y, key, val, None)


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

    Examples:
        >>> net = fb.mlp([2, 3, 1]); x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> stacked = fb.init_many(net, jax.random.key(0), 3, jnp.float64)
        >>> r = fb.train_many(net, "squared_error", stacked, x, y, optax.sgd(0.1), epochs=5)
        >>> r.status.shape   # one run per start
        (3,)
    """
    leaves = jax.tree.leaves(params)
    leading = {tuple(jnp.shape(l)[:1]) for l in leaves}
    if not leaves or len(leading) != 1 or () in leading:
        raise ValueError(
            f"train_many: params must be stacked, every leaf with the same leading run axis K "
            f"(fb.init_many(net, key, K)); got leading sizes {sorted(s[0] if s else None for s in leading)}"
        )
    K = jnp.shape(leaves[0])[0]
    # one run's params, as shapes: the static checks need no values (slicing an array would compile)
    first = jax.tree.map(lambda l: jax.ShapeDtypeStruct(jnp.shape(l)[1:], jnp.result_type(l)), params)
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
        values=params,
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
    spread=None,
):
    """The jitted run for one static configuration, kept so that repeated calls reuse it.

    The key is what determines the program: the model, the loss, the gradient, the optimizer
    object (or the factory ``h -> GradientTransformation`` when ``factory``), ``epochs``, ``mode``,
    ``batch_size`` (``None`` outside mini-batch mode), ``goal``, whether runs are vmapped and whether
    a progress bar is fed, and how a mini-batch is placed (``spread``: ``sharding.batch_sharding``).
    Shapes and dtypes are ``jax.jit``'s own cache.
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
            spread=spread,
        )

    if vmapped:
        return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0, None, 0)))
    return jax.jit(one)


def init_many(net, key, k: int, dtype=None):
    """``k`` independent initialisations, stacked on a leading axis (for ``train_many``).

    Args:
        net: a ``Network``.
        key: a ``jax.random`` key, split into ``k``.
        k: the number of runs, a positive integer.
        dtype: the parameters' dtype (default as ``net.init``).

    Returns:
        ``net.init``'s tree with a leading ``k`` axis on every leaf.

    Examples:
        >>> net = fb.mlp([2, 3, 1])
        >>> stacked = fb.init_many(net, jax.random.key(0), 4)   # 4 independent starts
        >>> stacked[0]["W"].shape
        (4, 3, 2)
    """
    k = as_int(k, "k")
    return jax.vmap(lambda kk: net.init(kk, dtype))(jax.random.split(key, k))
