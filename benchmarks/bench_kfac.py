"""K-FAC's factors and optimizer step: fbackprop against kfac-jax and against first-order steps.
Variants run side by side in one process, in interleaved rounds; the tables give median times and the
median of per-round ratios.

    python benchmarks/bench_kfac.py [--quick] [--rounds 15] [--reps 5] [--batch 256]
                                    [--modes ggn_curvature_prop,ggn_exact] [--out runs/bench_kfac]

Networks (float32, CPU): the digits MLP ``[64, 128, 10]`` (relu, He init) and a small CNN on 8x8x1
images (``Conv2D(8, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``, ``Conv2D(16, 3x3, SAME)``, relu,
``Flatten``, ``Dense(10)``), softmax cross-entropy on integer labels, batch 256, inputs ``N(0, 1)``
(times do not depend on the values).

1. Factors: ``fb.kfac_factors(net, loss, kind)`` for ``kind = "exact"`` (one backward pass per
   output, vmapped) and ``"empirical"`` (one backward pass) against the gradient alone
   (``fb.value_and_backprop``) and against kfac-jax's curvature update for the same network and
   batch (``BlockDiagonalCurvature.update_curvature_matrix_estimate`` with ``estimation_mode``
   ``"ggn_exact"``: one VJP per output, unrolled, and ``"fisher_empirical"``), each jitted. The
   column ``rel`` is the largest relative difference between the two libraries' factors after the
   scaling that relates them (``kfac_jax_scaling``; tests/test_kfac_jax.py checks it in float64).
2. Step: one training step on the same net and batch: ``fbackprop_step(net, loss, transformation)``
   (the hand-written gradient, then any optax-style transformation: ``optax.sgd`` with momentum, and
   ``fb.kfac`` with kind exact or empirical, the same fixed rate, momentum and damping, its inverses
   every step or every 10 steps; ``FBACKPROP_STEPS`` lists them) against ``kfac_jax.Optimizer.step``
   with a fixed learning rate, momentum and damping, its curvature estimated every step by
   ``--modes`` (its default ``"ggn_curvature_prop"``: one Rademacher-projected backward pass;
   ``"ggn_exact"``: one per output),
   the inverses recomputed every step or every 10 steps; each timing is the mean of 10 consecutive
   steps (so it holds one inverse update of the second), each run carrying its own state.

kfac-jax is optional (``pip install -e '.[bench]'``); without it the bench times and writes the
fbackprop rows alone. kfac-jax 0.0.8 (the newest release) predates jax 0.9.2: ``import_kfac_jax``
applies, to that version only, the one-function fix that kfac-jax's main branch carries.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from timing import block, max_rel, problem, timed_rounds

import fbackprop as fb

L = fb.layers
LOSS = "cross_entropy"
CLASSES = 10
KINDS = {"exact": "ggn_exact", "empirical": "fisher_empirical"}  # fbackprop kind: kfac-jax mode
INVERSE_PERIODS = (1, 10)
STEP_REPS = 10  # consecutive steps per timing: a multiple of every inverse period
LEARNING_RATE, MOMENTUM, DAMPING = 1e-3, 0.9, 1e-2
AGREE_TOL = 1e-4  # float32, relative to the largest entry


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


# --- networks and data --------------------------------------------------------------------------


def digits_mlp(sizes=(64, 128, CLASSES)) -> fb.Network:
    """The digits MLP: relu hidden layers, He init, logits out."""
    return fb.mlp(list(sizes), activation="relu", output="identity", init="he")


def small_cnn(input_shape=(8, 8, 1), channels=(8, 16)) -> fb.Network:
    """``Conv2D(c1, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``, ``Conv2D(c2, 3x3, SAME)``, relu, ``Flatten``,
    ``Dense(10)``."""
    c1, c2 = channels
    return fb.serial(
        L.Conv2D(c1, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.AvgPool2D((2, 2)),
        L.Conv2D(c2, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.Flatten(),
        L.Dense(CLASSES),
        input_shape=input_shape,
    )


NETS = {"mlp": lambda: digits_mlp(), "cnn": lambda: small_cnn()}
QUICK_NETS = {"mlp": lambda: digits_mlp((8, 6, CLASSES)), "cnn": lambda: small_cnn((4, 4, 1), (2, 3))}


def compiled(fn, *args):
    """``jit(fn)`` compiled ahead for ``args``; returns ``(zero-argument call, seconds to compile)``."""
    t0 = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    return (lambda: c(*args)), time.perf_counter() - t0


def ratio_stats(times: dict, num: str, den: str) -> dict:
    """The median and range of the per-round ratios ``times[num] / times[den]``."""
    r = [a / b for a, b in zip(times[num], times[den])]
    return {"median": statistics.median(r), "spread": [min(r), max(r)]}


# --- 1. the factors -----------------------------------------------------------------------------


def bench_factors(name, net, batch, rounds, reps, kfac_jax) -> dict:
    """Times of the gradient, fbackprop's factors and kfac-jax's, and the factors' agreement."""
    params, x, labels = problem(net, batch)
    fns, compile_s, out = {}, {}, {}
    vbp = fb.value_and_backprop(net, LOSS)
    fns["gradient"], compile_s["gradient"] = compiled(vbp, params, x, labels)
    for kind in KINDS:
        f = fb.kfac_factors(net, LOSS, kind=kind)
        fns[f"fb {kind}"], compile_s[f"fb {kind}"] = compiled(f, params, x, labels)
    if kfac_jax is not None:
        kp, key = kfac_jax_params(net, params), jax.random.key(1)
        for mode in KINDS.values():
            est, f = kfac_jax_factors(kfac_jax, net, LOSS, mode)
            state = est.init(key, (kp, (x, labels)), None, None)
            fns[f"kfac-jax {mode}"], compile_s[f"kfac-jax {mode}"] = compiled(f, state, kp, x, labels, key)
    out = {k: f() for k, f in fns.items()}
    agree = {}
    if kfac_jax is not None:
        for kind, mode in KINDS.items():
            scale = kfac_jax_scaling(net, mode, batch)
            theirs = [(a * A, g * G) for (a, g), (A, G) in zip(scale, out[f"kfac-jax {mode}"])]
            ours = [(f.A, f.G) for f in out[f"fb {kind}"]]
            agree[kind] = max_rel(ours, theirs)
    times = timed_rounds(fns, rounds, reps)
    ratios = {f"fb {k} / gradient": ratio_stats(times, f"fb {k}", "gradient") for k in KINDS}
    if kfac_jax is not None:
        for kind, mode in KINDS.items():
            ratios[f"fb {kind} / kfac-jax {mode}"] = ratio_stats(times, f"fb {kind}", f"kfac-jax {mode}")
            ratios[f"kfac-jax {mode} / gradient"] = ratio_stats(times, f"kfac-jax {mode}", "gradient")
    return {
        "net": name,
        "batch": batch,
        "P": net.n_params,
        "times_s": {k: statistics.median(t) for k, t in times.items()},
        "ratios": ratios,
        "max_rel": agree,
        "compile_s": compile_s,
    }


# --- 2. the training step ------------------------------------------------------------------------


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


# The fbackprop steps timed: label -> (net, loss) -> an optax-style transformation. The K-FAC optimizer
# goes here when it exists (e.g. "fb.kfac": lambda net, loss: fb.kfac(net, loss, ...)).
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


def bench_steps(name, net, batch, rounds, modes, kfac_jax) -> dict:
    """Times of the fbackprop steps and kfac-jax's optimizer steps, ratios to the SGD step."""
    params, x, labels = problem(net, batch)
    fns, compile_s = {}, {}
    for label, make in FBACKPROP_STEPS.items():
        fns[label], compile_s[label] = fbackprop_stepper(net, make(net, LOSS), params, x, labels)
    if kfac_jax is not None:
        for mode in modes:
            for period in INVERSE_PERIODS:
                label = f"kfac-jax {mode}, inverse every {period}"
                fns[label], compile_s[label] = kfac_jax_stepper(
                    kfac_jax, net, mode, period, params, x, labels
                )
    for f in fns.values():
        block(f())
    times = timed_rounds(fns, rounds, STEP_REPS)
    base = next(iter(FBACKPROP_STEPS))
    ratios = {f"{k} / {base}": ratio_stats(times, k, base) for k in fns if k != base}
    for k in FBACKPROP_STEPS:
        for j in fns:
            if k != base and j.startswith("kfac-jax"):
                ratios[f"{k} / {j}"] = ratio_stats(times, k, j)
    return {
        "net": name,
        "batch": batch,
        "P": net.n_params,
        "times_s": {k: statistics.median(t) for k, t in times.items()},
        "ratios": ratios,
        "compile_s": compile_s,
    }


# --- report --------------------------------------------------------------------------------------


def _ratio(v) -> str:
    """``median  lo-hi`` of a ratio's statistics, or blanks."""
    if v is None:
        return f"{'':>10s} {'':>11s}"
    return f"{v['median']:>10.3f} {v['spread'][0]:>5.2f}-{v['spread'][1]:<5.2f}"


def factor_table(rows) -> str:
    head = (
        f"{'net':5s} {'P':>7s} {'batch':>6s} {'variant':27s} {'ms':>8s} {'/ gradient':>8s} {'spread':>11s} "
        f"{'/ kfac-jax':>10s} {'spread':>11s} {'rel':>8s}"
    )
    lines = [
        "factors: fb.kfac_factors vs the gradient alone (fb.value_and_backprop) and vs kfac-jax's "
        "curvature update, jitted, float32",
        "(ratios: per round, median and range; / kfac-jax: fb exact to ggn_exact, fb empirical to "
        "fisher_empirical; rel: the factors' largest relative difference after the scaling)",
        head,
        "-" * len(head),
    ]
    modes = dict(KINDS)
    for r in rows:
        for k, t in r["times_s"].items():
            kind = k[3:] if k.startswith("fb ") else None
            vs_kj = r["ratios"].get(f"{k} / kfac-jax {modes[kind]}") if kind else None
            rel = r["max_rel"].get(kind) if kind else None
            lines.append(
                f"{r['net']:5s} {r['P']:>7,d} {r['batch']:>6d} {k:27s} {1e3 * t:>8.3f} "
                f"{_ratio(r['ratios'].get(f'{k} / gradient'))} {_ratio(vs_kj)}"
                + (f" {rel:>8.1e}" if rel is not None else "")
            )
    return "\n".join(lines)


def step_table(rows) -> str:
    base = next(iter(FBACKPROP_STEPS))
    head = f"{'net':5s} {'P':>7s} {'batch':>6s} {'step':46s} {'ms':>8s} {'/ ' + base:>16s} {'spread':>11s}"
    lines = [
        "training step, jitted, float32 (ratio: per round, median and range)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        for k, t in r["times_s"].items():
            ratio = r["ratios"].get(f"{k} / {base}")
            lines.append(
                f"{r['net']:5s} {r['P']:>7,d} {r['batch']:>6d} {k:46s} {1e3 * t:>8.3f} "
                + (f"{ratio['median']:>16.3f} {ratio['spread'][0]:>5.2f}-{ratio['spread'][1]:<5.2f}" if ratio
                   else f"{'1':>16s}")
            )  # fmt: skip
        for q, v in r["ratios"].items():
            if not q.endswith(f"/ {base}"):
                lines.append(f"      {q:70s} {_ratio(v)}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny nets, batch 16, few rounds, the first mode (a smoke run)"
    )
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    p.add_argument("--reps", type=int, default=5, help="calls per timing of a factor computation")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument(
        "--modes",
        default="ggn_curvature_prop,ggn_exact",
        help="kfac-jax estimation modes of the optimizer step, comma-separated",
    )
    p.add_argument("--out", default="runs/bench_kfac")
    args = p.parse_args(argv)
    kfac_jax = import_kfac_jax()
    if kfac_jax is None:
        print("kfac-jax is not installed (pip install -e '.[bench]'): the fbackprop rows only", flush=True)
    nets = QUICK_NETS if args.quick else NETS
    batch = 16 if args.quick else args.batch
    rounds, reps = (3, 2) if args.quick else (args.rounds, args.reps)
    modes = [m for m in args.modes.split(",") if m][: 1 if args.quick else None]
    factors, steps = [], []
    for name, make in nets.items():
        factors.append(bench_factors(name, make(), batch, rounds, reps, kfac_jax))
        print("\n".join(factor_table(factors[-1:]).splitlines()[4:]), flush=True)
    for name, make in nets.items():
        steps.append(bench_steps(name, make(), batch, rounds, modes, kfac_jax))
        print("\n".join(step_table(steps[-1:]).splitlines()[3:]), flush=True)
    agree = all(v <= AGREE_TOL for r in factors for v in r["max_rel"].values())
    text = "\n\n".join(
        [
            factor_table(factors),
            step_table(steps),
            f"kfac-jax: {getattr(kfac_jax, '__version__', 'not installed')}"
            + (f"; factors agree after scaling (rel <= {AGREE_TOL:g}): {agree}" if kfac_jax else ""),
        ]
    )
    print("\n" + text)
    versions = fb.results.versions()
    versions["kfac_jax"] = getattr(kfac_jax, "__version__", None)
    result = {
        "config": vars(args),
        "versions": versions,
        "factors": factors,
        "steps": steps,
        "factors_agree": agree if kfac_jax else None,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return result


if __name__ == "__main__":
    main()
