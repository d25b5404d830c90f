"""``fb.mlp``: the multilayer perceptron, a ``Network`` of ``Dense`` and ``Activation`` layers.

Conventions (the matrix form of backpropagation, Rumelhart, Hinton & Williams 1986, in batch rows):
``x: (N, n_in)``; a dense layer has ``W: (fan_out, fan_in)``, ``b: (fan_out,)`` and computes
``z = a_prev @ W.T + b``; an activation layer computes ``a = f(z)``. Parameters are a tuple with one
``{"W", "b"}`` dict per dense layer, first layer first. The layer kinds are in ``fbackprop.layers``;
``fb.serial`` builds any other network from them.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import activations as _act
from .initializers import INITIALIZERS
from .layers import Activation, Dense, Network
from .layers.network import Params, serial
from .options import as_int

__all__ = ["Network", "Params", "mlp"]


def mlp(
    sizes: Sequence[int],
    activation: str | _act.Activation | Sequence[str | _act.Activation] = "sigmoid",
    output: str | _act.Activation = "identity",
    init: str = "glorot",
) -> Network:
    """A multilayer perceptron: ``sizes = [n_in, hidden..., n_out]``.

    ``activation``: one name for every hidden layer, or a list with one per hidden layer;
    ``output``: the last layer's activation (identity by default: logits or a linear output);
    ``init``: ``"uniform"`` (W and b on [-1, 1]), ``"glorot"``, ``"he"`` or ``"lecun"``.

    Args:
        sizes: layer widths ``[n_in, hidden..., n_out]``, at least two positive integers (Python,
            NumPy or 0-d JAX integers: ``labels.max() + 1`` works).
        activation: the hidden layers' activation name (default ``"sigmoid"``) or ``Activation``,
            or a list with one per hidden layer.
        output: the output layer's activation (default ``"identity"``).
        init: the initializer name (default ``"glorot"``); see ``INITIALIZERS``.

    Returns:
        A ``Network``: ``net.init(key, dtype)`` makes params, ``net.apply(params, x)`` runs it.

    Raises:
        TypeError: for a size that is not an integer.
        ValueError: for fewer than two sizes, a size below 1, or an unknown name.

    Examples:
        >>> net = fb.mlp([2, 8, 3], activation="tanh")
        >>> params = net.init(jax.random.key(0))
        >>> [(p["W"].shape, p["b"].shape) for p in params]
        [((8, 2), (8,)), ((3, 8), (3,))]
        >>> net.apply(params, jnp.ones((5, 2))).shape
        (5, 3)
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes must be a list of layer widths, e.g. [2, 3, 1]; got {sizes!r}")
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"sizes must list at least the input and output widths, e.g. [2, 3, 1]; got {list(sizes)}"
        )
    sizes = tuple(as_int(s, f"sizes[{i}]") for i, s in enumerate(sizes))
    n_hidden = len(sizes) - 2
    if isinstance(activation, (str, _act.Activation)):
        hidden = [_act.get(activation)] * n_hidden  # checked even when there is no hidden layer
    else:
        hidden = list(activation)
        if len(hidden) != n_hidden:
            raise ValueError(
                f"activation lists {len(hidden)} names but sizes {list(sizes)} has {n_hidden} hidden layers"
            )
    if init not in INITIALIZERS:
        raise ValueError(f"unknown init {init!r}; expected one of {sorted(INITIALIZERS)}")
    acts = [_act.get(a) for a in hidden] + [_act.get(output)]
    layers = []
    for n_out, act in zip(sizes[1:], acts):
        layers += [Dense(n_out, init), Activation(act)]
    return serial(*layers, input_shape=(sizes[0],))
