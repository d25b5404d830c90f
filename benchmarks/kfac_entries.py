"""The entries ``bench_kfac.py`` times side by side: kfac-jax (optional) behind the functions that hand it
the same network, batch and loss and read its factors back, and the training steps, fbackprop's
hand-written gradient with any optax-style transformation (``optax.sgd``, ``fb.kfac``) and
``kfac_jax.Optimizer.step``, each behind one ``Stepper`` interface. What is measured, and how, is in
``bench_kfac.py``'s docstring; how kfac-jax's factors relate to fbackprop's (the scaling) is in
``kfac_jax_scaling`` and tests/test_kfac_jax.py.

kfac-jax is optional (``pip install -e '.[bench]'``); ``import_kfac_jax`` returns None without it.
kfac-jax 0.0.8 (the newest release) predates jax 0.9.2: ``import_kfac_jax`` applies, to that version
only, the one-function fix that kfac-jax's main branch carries.
"""

from __future__ import annotations

import inspect
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from timing import block

import fbackprop as fb

L = fb.layers
LOSS = "cross_entropy"
INVERSE_PERIODS = (1, 10)
LEARNING_RATE, MOMENTUM, DAMPING = 1e-3, 0.9, 1e-2  # every timed step's (fixed: no adaptation)


# --- kfac-jax, optional ------------------------------------------------------------------------


def import_kfac_jax():
    """kfac-jax, or None where it is not installed.

    kfac-jax 0.0.8 evaluates a jaxpr equation with ``subfuns, params = primitive.get_bind_params(...)``;
    from jax 0.9.2 on ``get_bind_params`` returns the params alone, so every curvature update fails
    with "ValueError: too many values to unpack (expected 2)". kfac-jax's main branch has the fix
    (``tag_graph_matcher.eval_jaxpr_eqn`` binds the params alone from jax 0.9.2 on) but no release
    carries it yet; where the installed version lacks it, this applies that fix.

    Returns:
        The ``kfac_jax`` module, or None.
    """
    try:
        import kfac_jax
        from kfac_jax._src import tag_graph_matcher as tgm
    except ImportError:
        return None
    source = inspect.getsource(tgm.eval_jaxpr_eqn)
    if jax.__version_info__ >= (0, 9, 2) and "(0, 9, 2)" not in source and "subfuns, bind" in source:

        def eval_jaxpr_eqn(eqn, in_values):
            params = eqn.primitive.get_bind_params(eqn.params)
            with jax.extend.source_info_util.user_context(eqn.source_info.traceback):
                out = eqn.primitive.bind(*in_values, **params)
            return out if isinstance(out, list) else [out]

        tgm.eval_jaxpr_eqn = eval_jaxpr_eqn
    return kfac_jax


def kfac_jax_params(net: fb.Network, params) -> tuple:
    """fbackprop params in kfac-jax's layout: a dense layer's ``W: (n_out, n_in)`` transposed to
    ``(n_in, n_out)``, a convolution's ``(C_out, kh, kw, C_in)`` to HWIO ``(kh, kw, C_in, C_out)``.

    Args:
        net: a ``Network`` whose layers with parameters are top-level ``Dense`` or ``Conv2D``.
        params: its params, one ``{"W", "b"}`` per layer with parameters.

    Returns:
        A tuple of ``{"W", "b"}`` (``W`` before ``b`` in kfac-jax's flattening, as in fbackprop's).
    """
    out = []
    for layer, theta in zip(net.body.layers, net.body.thetas(params)):
        if isinstance(layer, L.Dense):
            out.append({"W": theta["W"].T, "b": theta["b"]})
        elif isinstance(layer, L.Conv2D):
            out.append({"W": jnp.transpose(theta["W"], (1, 2, 3, 0)), "b": theta["b"]})
        elif layer.has_params:
            raise ValueError(f"kfac_jax_params: Dense and Conv2D layers only; got {layer}")
    return tuple(out)


def kfac_jax_loss(kfac_jax, net: fb.Network, loss: str, squared_error_weight: float = 0.5):
    """The network and loss as a function kfac-jax traces: ``(kparams, (x, y)) -> C``.

    Dense and Conv2D layers are written as ``x @ W + b`` and ``lax.conv_general_dilated`` (NHWC,
    HWIO) ``+ b``, the patterns kfac-jax's graph matcher registers as layers; the other layers (no
    parameters) run fbackprop's own ``forward``. The loss is registered with kfac-jax:
    ``register_softmax_cross_entropy_loss(logits, labels)`` for ``"cross_entropy"`` (integer labels),
    ``register_squared_error_loss(yhat, y, weight)`` for ``"squared_error"``: kfac-jax's squared
    error is ``weight * sum (y - yhat)^2 / N``, fbackprop's ``(1/N) sum 0.5 ||yhat - y||^2``, so
    ``weight = 0.5`` (the default) is fbackprop's loss.

    Args:
        kfac_jax: the module (``import_kfac_jax()``).
        net: a ``Network`` of top-level layers, those with parameters ``Dense`` or ``Conv2D``.
        loss: ``"cross_entropy"`` or ``"squared_error"``.
        squared_error_weight: kfac-jax's ``weight`` of the squared error (default 0.5).

    Returns:
        ``(kparams, (x, y)) -> C``, the batch-mean cost (``kparams`` as ``kfac_jax_params`` makes them).
    """
    if loss not in ("cross_entropy", "squared_error"):
        raise ValueError(f"kfac_jax_loss: loss must be 'cross_entropy' or 'squared_error'; got {loss!r}")

    def apply(kparams, x):
        h, it = x, iter(kparams)
        for layer in net.body.layers:
            if isinstance(layer, L.Dense):
                theta = next(it)
                h = h @ theta["W"] + theta["b"]
            elif isinstance(layer, L.Conv2D):
                theta = next(it)
                h = jax.lax.conv_general_dilated(
                    h,
                    theta["W"],
                    window_strides=layer.stride,
                    padding=layer.padding,
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
                h = h + theta["b"]
            elif layer.has_params:
                raise ValueError(f"kfac_jax_loss: Dense and Conv2D layers only; got {layer}")
            else:
                h = layer.forward(None, h)[0]
        return h

    def cost(kparams, batch):
        x, y = batch
        yhat = apply(kparams, x)
        if loss == "cross_entropy":
            kfac_jax.register_softmax_cross_entropy_loss(yhat, y)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(yhat), y[:, None], axis=1))
        kfac_jax.register_squared_error_loss(yhat, y, weight=squared_error_weight)
        return squared_error_weight * jnp.sum((yhat - y) ** 2) / x.shape[0]

    return cost


def kfac_jax_factors(kfac_jax, net: fb.Network, loss: str, mode: str, squared_error_weight: float = 0.5):
    """kfac-jax's Kronecker factors of one batch, as it stores them (no moving average).

    Args:
        kfac_jax: the module.
        net, loss, squared_error_weight: as ``kfac_jax_loss``.
        mode: kfac-jax's ``estimation_mode`` (``"ggn_exact"``, ``"fisher_exact"``,
            ``"fisher_empirical"``, ``"fisher_gradients"``, ``"ggn_curvature_prop"``, ...).

    Returns:
        ``(estimator, factors)``: ``factors(state, kparams, x, y, key) -> (A_kj, G_kj) per layer with
        parameters`` in ``params``' order (jittable; one curvature update of ``state`` with
        ``ema_old = 0``), where ``estimator.init(key, (kparams, (x, y)), None, None)`` makes ``state``.
    """
    est = kfac_jax.BlockDiagonalCurvature(kfac_jax_loss(kfac_jax, net, loss, squared_error_weight))

    def factors(state, kparams, x, y, key):
        new = est.update_curvature_matrix_estimate(
            state, 0.0, 1.0, 0.0, x.shape[0], key, (kparams, (x, y)), estimation_mode=mode
        )
        return read_factors(est, new, kparams)

    return est, factors


def read_factors(est, state, kparams) -> tuple:
    """``(A_kj, G_kj)`` of every layer with parameters from a kfac-jax estimator's state.

    Args:
        est: a finalized ``kfac_jax.BlockDiagonalCurvature``.
        state: its state.
        kparams: the params it was traced with (``kfac_jax_params``).

    Returns:
        A tuple of ``(A_kj, G_kj)`` in ``kparams``' order.

    Raises:
        ValueError: for a layer kfac-jax did not register as one two-factor Kronecker block with its
            bias (its graph matcher missed the pattern).
    """
    index, out = est.params_block_index, []
    for l, theta in enumerate(kparams):
        b = index[l]["W"]
        block, f = est.blocks[b], state.blocks_states[b].factors
        if index[l]["b"] != b or len(f) != 2 or "KroneckerFactored" not in type(block).__name__:
            raise ValueError(
                f"kfac-jax did not register layer {l} (W {theta['W'].shape}) as one Kronecker block "
                f"with its bias; got {type(block).__name__}"
            )
        out.append((f[0].value, f[1].value))
    return tuple(out)


def kfac_jax_scaling(net: fb.Network, mode: str, n: int) -> tuple:
    """``(a, g)`` per layer with parameters such that fbackprop's ``A = a A_kj`` and ``G = g G_kj``.

    ``a`` is the number of output positions ``T`` of a convolution (kfac-jax averages the patches over
    them, fbackprop sums them; both average ``G`` over them), 1 for a dense layer; ``g`` is the batch
    size ``n`` for ``"fisher_empirical"`` (kfac-jax divides the per-example gradients by ``sqrt(n)``
    besides the batch mean), 1 for every other mode.

    Args:
        net: the network.
        mode: kfac-jax's estimation mode.
        n: the batch size.

    Returns:
        A tuple of ``(a, g)`` floats.
    """
    out, shape = [], tuple(net.input_shape)
    for layer in net.body.layers:
        out_shape = layer.init(jax.random.key(0), shape, jnp.float32)[1]
        if layer.has_params:
            positions = int(np.prod(out_shape[:-1])) if isinstance(layer, L.Conv2D) else 1
            out.append((float(positions), float(n) if mode == "fisher_empirical" else 1.0))
        shape = tuple(out_shape)
    return tuple(out)


# --- the training steps --------------------------------------------------------------------------


def fbackprop_step(net: fb.Network, loss: str, transformation):
    """One training step of fbackprop's hand-written gradient and an optax-style transformation.

    The transformation's ``update`` is called as ``update(g, state, params, x=x, y=y)`` (optax's
    ``GradientTransformationExtraArgs``: a first-order transformation ignores the batch, a
    curvature-based one reads it); a plain ``GradientTransformation`` is wrapped by
    ``optax.with_extra_args_support``.

    Args:
        net: an fbackprop ``Network``.
        loss: a loss name.
        transformation: any ``(init, update)`` pair in optax's convention.

    Returns:
        ``(init, step)``: ``init(params) -> state`` and the jittable ``step(params, state, x, y) ->
        (params, state, C)``.
    """
    tx = optax.with_extra_args_support(transformation)
    vbp = fb.value_and_backprop(net, loss)

    def step(params, state, x, y):
        C, g = vbp(params, x, y)
        updates, state = tx.update(g, state, params, x=x, y=y)
        return optax.apply_updates(params, updates), state, C

    return tx.init, step


# The fbackprop steps timed: label -> (net, loss) -> an optax-style transformation (the first, SGD,
# is the base of the ratios; any other optax-style transformation can be added).
def _fb_kfac(kind: str, inverse_every: int):
    """``fb.kfac`` configured as the kfac-jax rows are: fixed rate, momentum and damping."""
    return lambda net, loss: fb.kfac(
        net, loss, learning_rate=LEARNING_RATE, momentum=MOMENTUM, damping=DAMPING, adapt_damping=False,
        kind=kind, inverse_every=inverse_every,
    )  # fmt: skip


FBACKPROP_STEPS = {
    "fb + optax.sgd": lambda net, loss: optax.sgd(LEARNING_RATE, momentum=MOMENTUM),
    **{
        f"fb.kfac {kind}, inverse every {t}": _fb_kfac(kind, t)
        for kind in ("exact", "empirical")
        for t in INVERSE_PERIODS
    },
}


class Stepper:
    """A training run advanced one step per call (its state carried), for ``timed_rounds``."""

    def __init__(self, step, params, state):
        self.step, self.params, self.state = step, params, state

    def __call__(self):
        self.params, self.state = self.step(self.params, self.state)
        return self.params


def fbackprop_stepper(net, transformation, params, x, labels):
    """A ``Stepper`` of ``fbackprop_step`` (compiled ahead) and its compile time."""
    init, step = fbackprop_step(net, LOSS, transformation)
    state = init(params)
    t0 = time.perf_counter()
    c = jax.jit(step).lower(params, state, x, labels).compile()
    seconds = time.perf_counter() - t0
    return Stepper(lambda p, s: c(p, s, x, labels)[:2], params, state), seconds


def kfac_jax_stepper(kfac_jax, net, mode, period, params, x, labels):
    """A ``Stepper`` of ``kfac_jax.Optimizer.step`` (fixed learning rate, momentum and damping; no
    burn-in; curvature every step by ``mode``, inverses every ``period`` steps) and its first step's
    time (compilation included)."""
    opt = kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(kfac_jax_loss(kfac_jax, net, LOSS)),
        l2_reg=0.0,
        use_adaptive_learning_rate=False,
        use_adaptive_momentum=False,
        use_adaptive_damping=False,
        num_burnin_steps=0,
        estimation_mode=mode,
        curvature_ema=0.95,
        inverse_update_period=period,
        multi_device=False,
    )
    kp = jax.tree.map(jnp.copy, kfac_jax_params(net, params))  # kfac-jax's step donates its params
    key = jax.random.key(2)
    lr, mom, damp = (jnp.asarray(v, x.dtype) for v in (LEARNING_RATE, MOMENTUM, DAMPING))
    counter = [0]

    def step(p, s):
        p, s, _ = opt.step(
            p, s, key, batch=(x, labels), learning_rate=lr, momentum=mom, damping=damp,
            global_step_int=counter[0],
        )  # fmt: skip
        counter[0] += 1
        return p, s

    stepper = Stepper(step, kp, opt.init(kp, key, (x, labels)))
    t0 = time.perf_counter()
    block(stepper())
    return stepper, time.perf_counter() - t0
