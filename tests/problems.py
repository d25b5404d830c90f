"""A shared zoo of small problems: a network, its params, a batch and targets for each loss."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from hypothesis import strategies as st

import fbackprop as fb

LOSS_NAMES = tuple(sorted(fb.losses.LOSSES))
ACTIVATION_NAMES = tuple(sorted(fb.activations.ACTIVATIONS))


class Problem(NamedTuple):
    net: fb.Network
    params: tuple
    x: jax.Array
    y: jax.Array
    loss: str


def targets(key, loss: str, n: int, n_out: int, dtype=jnp.float64):
    """Targets of the form each loss takes: reals, integer labels, or 0/1 values."""
    if loss == "cross_entropy":
        return jax.random.randint(key, (n,), 0, n_out)
    if loss == "binary_cross_entropy":
        return jax.random.bernoulli(key, 0.5, (n, n_out)).astype(dtype)
    return jax.random.normal(key, (n, n_out), dtype)


def make_problem(
    sizes,
    activations,
    loss: str,
    n: int,
    seed: int = 0,
    dtype=jnp.float64,
    init: str = "glorot",
    x_scale: float = 1.0,
) -> Problem:
    net = fb.mlp(list(sizes), activation=list(activations), init=init)
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    kp, kb = jax.random.split(kp)
    params = net.init(kp, dtype)
    # non-zero biases: with the zero biases of glorot/he, a dead relu feeding the next layer puts its
    # z exactly on a kink (0), where a one-sided derivative and autodiff's convention may differ
    bias_keys = jax.random.split(kb, len(params))
    params = tuple(
        {**p, "b": p["b"] + 0.1 * jax.random.normal(k, p["b"].shape, dtype)}
        for p, k in zip(params, bias_keys)
    )
    x = x_scale * jax.random.normal(kx, (n, sizes[0]), dtype)
    return Problem(net, params, x, targets(ky, loss, n, sizes[-1], dtype), loss)


@st.composite
def problems(draw, max_depth=5, max_width=16, max_batch=32):
    """Random depth 1-5 (dense layers), widths 1-16, an activation per layer, any loss, batch 1-32."""
    depth = draw(st.integers(1, max_depth))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1))
    acts = draw(st.lists(st.sampled_from(ACTIVATION_NAMES), min_size=depth - 1, max_size=depth - 1))
    loss = draw(st.sampled_from(LOSS_NAMES))
    if loss == "cross_entropy":  # a softmax needs two logits at least (one output is refused)
        sizes[-1] = max(sizes[-1], 2)
    n = draw(st.integers(1, max_batch))
    x_scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    init = draw(st.sampled_from(["glorot", "uniform", "he"]))
    return make_problem(sizes, acts, loss, n, seed=draw(st.integers(0, 2**16)), init=init, x_scale=x_scale)
