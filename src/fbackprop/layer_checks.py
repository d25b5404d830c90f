"""The machinery of ``fb.check_layer``: the random point, ``phi``, and each piece's ``(hand-written,
autodiff)`` pair.

``draw`` makes the concrete arrays (``theta`` from the layer's ``init`` plus noise; the input, the
directions and ``phi``'s coefficients from a NumPy generator seeded by the key, so no random-number
program is compiled); inside one compiled program ``problem`` runs ``forward`` and forms ``g`` and
``H`` by autodiff, and ``pieces`` lists, for each piece that applies to the layer, a thunk returning
the layer's own result and the autodiff reference. ``rel_err`` measures one pair.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .layers.base import PASSES, READOUTS


class Missing(Exception):
    """A method the piece needs is missing: ``ok`` is False for a pass, None for a readout."""

    def __init__(self, note: str, ok: bool | None):
        super().__init__(note)
        self.ok = ok


def rel_err(hand, ref) -> tuple[float, str]:
    """The largest per-leaf relative error of ``hand`` against ``ref``, with ``fb.compare``'s scale.

    Args:
        hand: the layer's result (any pytree; ``None`` stands for zeros shaped like ``ref``).
        ref: the autodiff reference.

    Returns:
        ``(max_rel_err, note)``: ``note`` is ``""``, or says how the two differ in structure or shape
        (then ``max_rel_err`` is ``nan``), or that ``hand`` is not finite.
    """
    if hand is None and ref is not None:
        hand = jax.tree.map(jnp.zeros_like, ref)
    lh, th = jax.tree.flatten(hand)
    lr, tr = jax.tree.flatten(ref)
    if th != tr:
        return math.nan, f"returned the structure {th}, expected {tr}"
    for a, b in zip(lh, lr):
        if jnp.shape(a) != jnp.shape(b):
            return math.nan, f"returned shape {tuple(jnp.shape(a))}, expected {tuple(jnp.shape(b))}"
    lh = [np.asarray(a, np.float64) for a in lh]
    lr = [np.asarray(b, np.float64) for b in lr]
    big = max([float(np.abs(a).max(initial=0.0)) for a in lh + lr] + [0.0])
    err = 0.0
    for a, b in zip(lh, lr):
        scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-3 * big, np.finfo(float).tiny)
        err = max(err, float(np.abs(a - b).max(initial=0.0) / scale))
    if not all(np.isfinite(a).all() for a in lh):
        return math.nan, "returned non-finite values"
    return err, ""


def _normal_like(rng: np.random.Generator, tree):
    """Standard normal float64 arrays shaped like ``tree``'s leaves (``None`` stays ``None``)."""
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(jnp.shape(a))), tree)


class Draws(NamedTuple):
    """The random point and directions (concrete arrays: the compiled program's arguments)."""

    theta: Any
    x: jax.Array
    v: Any
    r_x: jax.Array
    r_g: jax.Array
    c: jax.Array  # (N, n_out)
    M: jax.Array  # (N, n_out, n_out), symmetric
    w: jax.Array  # (N, n_out)
    G: jax.Array  # (2, N, *out_shape): two seeds for jacobian_gram


def _leaf_dicts(theta) -> list:
    """The parameters of each layer inside a combinator's (nested) tuple, in order."""
    return [d for entry in theta for d in (_leaf_dicts(entry) if isinstance(entry, tuple) else [entry])]


def draw(layer, input_shape, key, batch: int) -> Draws:
    """The random point and directions, as concrete arrays.

    ``theta`` is ``layer.init`` plus 0.25 standard normal noise (so constant initialisations are
    checked at a generic point); the rest comes from a NumPy generator seeded by ``key`` (no
    random-number program to compile).

    Args:
        layer: a layer (already checked to have ``init``, ``forward``, ``has_params``).
        input_shape: one example's input shape.
        key: a JAX PRNG key.
        batch: the number of examples.

    Returns:
        A ``Draws``.

    Raises:
        TypeError: for an ``init`` that does not return ``(theta, out_shape)``.
        ValueError: for a ``forward`` whose output shape is not ``(batch, *out_shape)``.
    """
    k_theta, k_rest = jax.random.split(key)
    init = layer.init(k_theta, input_shape, jnp.float64)
    if not (isinstance(init, tuple) and len(init) == 2):
        raise TypeError(
            f"check_layer: {layer!r}.init must return (theta, out_shape), the parameters (None without "
            f"any) and one example's output shape; got {type(init).__name__}"
        )
    theta, out_shape = init[0], tuple(init[1])
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_rest)).ravel().tolist())
    if layer.has_params:
        theta = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), theta)
        theta = jax.tree.map(lambda a, e: a + 0.25 * e, theta, _normal_like(rng, theta))
    x = jnp.asarray(rng.standard_normal((batch, *input_shape)))
    expected = (batch, *tuple(out_shape))
    y_shape = jnp.shape(jax.eval_shape(lambda t, x: layer.forward(t, x)[0], theta, x))
    if y_shape != expected:
        raise ValueError(
            f"check_layer: {layer!r}.forward returned y of shape {y_shape} for x of shape {x.shape}, "
            f"but init said the output shape is {tuple(out_shape)} (expected {expected})"
        )
    n_out = math.prod(out_shape)
    M = rng.standard_normal((batch, n_out, n_out)) / math.sqrt(n_out)
    return Draws(
        theta=theta,
        x=x,
        v=_normal_like(rng, theta) if layer.has_params else None,
        r_x=jnp.asarray(rng.standard_normal(x.shape)),
        r_g=jnp.asarray(rng.standard_normal(expected)),
        c=jnp.asarray(rng.standard_normal((batch, n_out))),
        M=jnp.asarray(0.5 * (M + np.swapaxes(M, 1, 2))),
        w=jnp.asarray(rng.standard_normal((batch, n_out))),
        G=jnp.asarray(rng.standard_normal((2, *expected))),
    )


class Problem(NamedTuple):
    """The point, directions and scalar function every piece is checked at (inside the program)."""

    theta: Any
    x: jax.Array
    cache: Any
    v: Any
    r_x: jax.Array
    r_g: jax.Array
    g: jax.Array
    H: jax.Array  # (N, n_out, n_out)
    phi_each: Any  # y -> (N,)
    G: jax.Array


def problem(layer, d: Draws) -> Problem:
    """``y, cache = forward(theta, x)``, ``phi``, ``g = dphi/dy`` and ``H_n = d2phi/dy_n^2`` by autodiff.

    Args:
        layer: the layer.
        d: the ``Draws`` (inside the compiled program: traced).

    Returns:
        A ``Problem``.
    """
    batch = d.x.shape[0]
    y, cache = layer.forward(d.theta, d.x)

    def phi_one(yn, cn, Mn, wn):
        return cn @ yn + 0.5 * yn @ Mn @ yn + jnp.sum(wn * yn**3) / 6.0

    def phi_each(y):
        return jax.vmap(phi_one)(y.reshape(batch, -1), d.c, d.M, d.w)

    g = jax.grad(lambda y: jnp.sum(phi_each(y)))(y)
    H = jax.vmap(jax.hessian(phi_one))(y.reshape(batch, -1), d.c, d.M, d.w)
    return Problem(d.theta, d.x, cache, d.v, d.r_x, d.r_g, g, H, phi_each, d.G)


def _need(layer, name: str):
    """``layer.name``, or ``Missing`` saying what to add."""
    method = getattr(layer, name, None)
    if callable(method):
        return method
    if name in PASSES:
        raise Missing(f"add {PASSES[name]}", False)
    raise Missing(f"add {READOUTS[name]}", None)


def _diag_blocks(full: jax.Array, batch: int) -> jax.Array:
    """``(N, a, N, b) -> (N, a, b)``: the per-example blocks of a batch Jacobian or Hessian."""
    idx = jnp.arange(batch)
    return full[idx, :, idx, :]


def pieces(layer, p: Problem):
    """The pieces that apply to ``layer``, in the report's order.

    Args:
        layer: the layer.
        p: the ``Problem``.

    Returns:
        A list of ``(name, compute)``; ``compute()`` returns ``(hand-written, autodiff reference)`` or
        raises ``Missing`` (a method the piece needs is missing) or the layer's own error.
    """
    batch = p.x.shape[0]
    n_in = math.prod(p.x.shape[1:])

    def f(theta, x):
        return layer.forward(theta, x)[0]

    def b(theta, x, g):
        return layer.backward(theta, layer.forward(theta, x)[1], g)

    def fixed(r_x):
        return r_x is None

    def forward_r(r_x):
        def compute():
            hand = _need(layer, "forward_r")(p.theta, p.v, p.cache, r_x)[0]
            ref = jax.jvp(f, (p.theta, p.x), (p.v, jnp.zeros_like(p.x) if fixed(r_x) else r_x))[1]
            return hand, ref

        return compute

    def backward_r(r_x):
        def compute():
            _need(layer, "backward_r")
            r_cache = _need(layer, "forward_r")(p.theta, p.v, p.cache, r_x)[1]
            hand = layer.backward_r(p.theta, p.v, p.cache, r_cache, p.g, p.r_g)
            tangent_x = jnp.zeros_like(p.x) if fixed(r_x) else r_x
            ref = jax.jvp(b, (p.theta, p.x, p.g), (p.v, tangent_x, p.r_g))[1]
            return hand, ref

        return compute

    def backward2(exact):
        def compute():
            hand = _need(layer, "backward2")(p.theta, p.cache, p.H, p.g, exact)
            if exact:
                full = jax.hessian(lambda x: jnp.sum(p.phi_each(f(p.theta, x))))(p.x)
                return hand, _diag_blocks(full.reshape(batch, n_in, batch, n_in), batch)
            J = _diag_blocks(jax.jacfwd(lambda x: f(p.theta, x))(p.x).reshape(batch, -1, batch, n_in), batch)
            return hand, jnp.einsum("noi,nop,npj->nij", J, p.H, J)

        return compute

    pieces = []
    if callable(getattr(layer, "reference", None)):
        pieces.append(("forward vs reference", lambda: (f(p.theta, p.x), layer.reference(p.theta, p.x))))
    pieces.append(
        (
            "backward (input)",
            lambda: (
                layer.backward(p.theta, p.cache, p.g)[0],
                jax.vjp(lambda x: f(p.theta, x), p.x)[1](p.g)[0],
            ),
        )
    )
    if layer.has_params:
        pieces.append(
            (
                "backward (params)",
                lambda: (
                    layer.backward(p.theta, p.cache, p.g)[1],
                    jax.vjp(lambda t: f(t, p.x), p.theta)[1](p.g)[0],
                ),
            )
        )
    pieces += [
        ("forward_r", forward_r(p.r_x)),
        ("forward_r (fixed input)", forward_r(None)),
        ("backward_r", backward_r(p.r_x)),
        ("backward_r (fixed input)", backward_r(None)),
        ("backward2", backward2(True)),
        ("backward2 (GGN)", backward2(False)),
    ]
    if layer.has_params:
        pieces += _readout_pieces(layer, p, f)
    return pieces


def _readout_pieces(layer, p: Problem, f):
    """The readouts against ``jax.hessian``/``jax.jacfwd`` in the flattened parameters."""
    batch = p.x.shape[0]
    p0, unravel = ravel_pytree(p.theta)

    def F(q):
        return f(unravel(q), p.x).reshape(batch, -1)  # (N, n_out)

    memo = {}

    def hess():  # per-example Hessians in theta: (N, P, P)
        if "H" not in memo:
            memo["H"] = jax.hessian(lambda q: p.phi_each(F(q)))(p0)
        return memo["H"]

    def jac():  # per-example output Jacobians in theta: (N, n_out, P)
        if "J" not in memo:
            memo["J"] = jax.jacfwd(F)(p0)
        return memo["J"]

    def per_example_grads():
        hand = _need(layer, "per_example_grads")(p.theta, p.cache, p.g)
        return hand, jax.vmap(unravel)(jnp.einsum("no,nop->np", p.g.reshape(batch, -1), jac()))

    def hessian_diag():
        hand = _need(layer, "hessian_diag")(p.theta, p.cache, p.H, p.g, True)
        return hand, unravel(jnp.diagonal(jnp.sum(hess(), axis=0)))

    def per_example_hessian_diag():
        hand = _need(layer, "per_example_hessian_diag")(p.theta, p.cache, p.H, p.g, True)
        return hand, jax.vmap(unravel)(jnp.diagonal(hess(), axis1=1, axis2=2))

    def hessian_block(exact):
        def compute():
            hand = _need(layer, "hessian_block")(p.theta, p.cache, p.H, p.g, exact)
            full = jnp.sum(hess(), axis=0) if exact else jnp.einsum("noi,nop,npj->ij", jac(), p.H, jac())
            if not isinstance(p.theta, tuple):
                return hand, full
            # a combinator: one block per layer inside it, the diagonal blocks of its parameters' matrix
            cuts = np.cumsum([0] + [sum(a.size for a in jax.tree.leaves(d)) for d in _leaf_dicts(p.theta)])
            return jax.tree.leaves(hand), [full[i:j, i:j] for i, j in zip(cuts[:-1], cuts[1:])]

        return compute

    def jacobian_gram():
        hand = layer.jacobian_gram(p.theta, p.cache, p.G)
        rows = jnp.einsum("kno,nop->nkp", p.G.reshape(2, batch, -1), jac())
        return hand, jnp.einsum("nkp,mjp->nkmj", rows, rows)

    def kfac_factors():  # abar_nt = d z_(n, t, 0) / d [W_0 | b_0]; G from the seeds
        hand = layer.kfac_factors(p.theta, p.cache, p.G)
        c = p.theta["b"].shape[0]
        d = jax.vmap(unravel)(jac().reshape(-1, p0.size))  # d z_(n, t, o) / dtheta, rows (n, t, o)
        W0 = d["W"].reshape(-1, c, c, d["W"][0, 0].size)[:, 0, 0]  # (N T, fan_in)
        abar = jnp.concatenate([W0, d["b"].reshape(-1, c, c)[:, 0, :1]], axis=1)
        g = p.G.reshape(-1, c)
        return tuple(hand), (abar.T @ abar / batch, g.T @ g / abar.shape[0])

    pieces = [
        ("per_example_grads", per_example_grads),
        ("hessian_diag", hessian_diag),
        ("per_example_hessian_diag", per_example_hessian_diag),
        ("hessian_block", hessian_block(True)),
        ("hessian_block (GGN)", hessian_block(False)),
    ]
    if callable(getattr(layer, "jacobian_gram", None)):
        pieces.append(("jacobian_gram", jacobian_gram))
    if callable(getattr(layer, "kfac_factors", None)) and isinstance(p.theta, dict):
        pieces.append(("kfac_factors", kfac_factors))
    return pieces
