"""``Network``: a ``Serial`` of layers with a fixed input shape, the object every fbackprop function takes.

``fb.serial(*layers, input_shape=...)`` builds one (``fb.mlp`` too). It knows its shapes without
computing anything: the parameters' shapes and the output shape come from ``jax.eval_shape`` of
its ``init`` (traced once, cached), and the boundary checks read them from there, whatever the layers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ..inputs import check_inputs
from ..options import as_int
from .activation import Activation
from .dense import Dense
from .serial import Serial

Params = tuple


@dataclass(frozen=True)
class Network:
    """A network: ``body`` (a ``Serial``) on inputs of one example's shape ``input_shape``.

    Attributes:
        body: the ``Serial`` of the layers.
        input_shape: one example's shape (``x`` is ``(N, *input_shape)``).

    Examples:
        >>> net = fb.serial(fb.layers.Dense(4), fb.layers.Activation("tanh"), fb.layers.Dense(2),
        ...                 input_shape=(3,))
        >>> net.output_shape, net.n_params
        ((2,), 26)
    """

    body: Serial
    input_shape: tuple

    @property
    def layers(self) -> tuple:
        """The layers, first first."""
        return self.body.layers

    @property
    def param_shapes(self) -> tuple:
        """The parameters' tree, a ``jax.ShapeDtypeStruct`` (float32) at every leaf, from ``eval_shape``."""
        return _layout(self)[0]

    @property
    def output_shape(self) -> tuple:
        """One example's output shape, ``(n_out,)``."""
        return _layout(self)[1]

    @property
    def n_out(self) -> int:
        """The output width."""
        return self.output_shape[0]

    @property
    def n_in(self) -> int:
        """The number of input features of one example, ``prod(input_shape)``."""
        return math.prod(self.input_shape)

    @property
    def n_params(self) -> int:
        """The number of parameters ``P``."""
        return sum(leaf.size for leaf in jax.tree.leaves(self.param_shapes))

    @property
    def is_mlp(self) -> bool:
        """Whether it is a chain of ``Dense`` and ``Activation`` layers on vectors (as ``fb.mlp`` builds)."""
        return len(self.input_shape) == 1 and all(isinstance(l, (Dense, Activation)) for l in self.layers)

    @property
    def sizes(self) -> tuple:
        """``(n_in, n_1, ..., n_L)``: the widths of a network of ``Dense`` and ``Activation`` layers."""
        if not self.is_mlp:
            raise AttributeError("sizes is defined for networks of Dense and Activation layers only")
        return self.input_shape + tuple(l.n_out for l in self.layers if isinstance(l, Dense))

    def init(self, key: jax.Array, dtype: Any = None) -> Params:
        """Fresh parameters from the layers' initializers.

        Args:
            key: a ``jax.random`` key.
            dtype: the parameters' floating dtype (default ``None``: float64 when x64 is on, else float32).

        Returns:
            A tuple with one entry per layer with parameters (Dense: ``{"W": (fan_out, fan_in),
            "b": (fan_out,)}``; Conv2D: ``{"W": (out, kh, kw, in), "b": (out,)}``; LayerNorm:
            ``{"gamma", "beta"}``; Residual: the tuple of its block's).
        """
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
        return self.body.init(key, self.input_shape, dtype)[0]

    def forward(self, params: Params, x: jax.Array):
        """The forward walk, unchecked: the output and what the backward passes need.

        Args:
            params: the parameters.
            x: ``(N, *input_shape)``.

        Returns:
            ``(yhat: (N, n_out), cache)``: the cache is a ``SerialCache`` (``inputs[k]``, what layer ``k``
            received; ``caches[k]``, its cache).
        """
        return self.body.forward(params, x)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """The forward pass: the network output for a batch.

        Args:
            params: the parameters (structure and shapes checked).
            x: inputs ``(N, *input_shape)``, one example per leading row.

        Returns:
            ``yhat: (N, n_out)`` (logits or linear outputs unless the last layer says otherwise).
        """
        x = check_inputs(self, params, x)
        return self.body.forward(params, x)[0]

    def layer_names(self) -> tuple:
        """A name per entry of ``params``: the layer's position in ``layers`` (from 1) and kind.

        ``"layer 1 Conv2D"``; inside a block, ``"layer 4 Residual > 1 Conv2D"``.

        Returns:
            A tuple shaped like ``params``' top levels, a string per layer with parameters.
        """
        return _layer_names(self)

    def __repr__(self) -> str:
        if self.is_mlp:
            acts = [l.activation.name for l in self.layers if isinstance(l, Activation)]
            return f"Network(sizes={list(self.sizes)}, activations={acts})"
        return f"Network(input_shape={self.input_shape}, layers={list(self.layers)})"


def _names(serial: Serial, prefix: str) -> tuple:
    out = []
    for k, layer in enumerate(serial.layers, 1):
        if layer.has_params:
            name = f"{prefix}{k} {type(layer).__name__}"
            inner = layer if isinstance(layer, Serial) else getattr(layer, "block", None)
            out.append(_names(inner, f"{name} > ") if isinstance(inner, Serial) else name)
    return tuple(out)


@functools.cache
def _layer_names(net: Network) -> tuple:
    return _names(net.body, "layer ")


@functools.cache
def _layout(net: Network):
    """``(param_shapes, output_shape)`` of ``net`` by ``jax.eval_shape`` of its ``init`` (no computing)."""
    out = {}

    def init():
        theta, out["shape"] = net.body.init(jax.random.key(0), net.input_shape, jnp.float32)
        return theta

    shapes = jax.eval_shape(init)  # the key made inside the trace: nothing is compiled
    return shapes, tuple(out["shape"])


def serial(*layers, input_shape=None):
    """Layers in order: a ``Network`` on inputs of ``input_shape``, or without it a ``Serial`` to nest.

    Args:
        *layers: the layers (``fb.layers.Dense``, ``Conv2D``, ``Activation``, ...), first first.
        input_shape: one example's shape (``(8, 8, 1)`` for 8x8 grey images, channels last;
            ``(n_in,)`` or an int for vectors); ``None`` gives a ``Serial`` block for another network.

    Returns:
        A ``Network`` (``net.init(key)``, ``net.apply(params, x)``), or a ``Serial``.

    Raises:
        TypeError: for something that is not a layer, or a bad ``input_shape``.
        ValueError: for a layer that cannot take the shape it gets (naming the layer), or an output
            that is not one vector per example.

    Examples:
        >>> net = fb.serial(fb.layers.Conv2D(4, (3, 3), padding="SAME"), fb.layers.Activation("relu"),
        ...                 fb.layers.Flatten(), fb.layers.Dense(10), input_shape=(8, 8, 1))
        >>> params = net.init(jax.random.key(0))
        >>> params[0]["W"].shape, net.apply(params, jnp.ones((2, 8, 8, 1))).shape
        ((4, 3, 3, 1), (2, 10))
    """
    body = Serial(*layers)
    if input_shape is None:
        return body
    if isinstance(input_shape, int) or hasattr(input_shape, "__index__"):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise TypeError(
            f"input_shape must be one example's shape, e.g. (8, 8, 1) or (3,); got {input_shape!r}"
        )
    input_shape = tuple(as_int(s, f"input_shape[{i}]") for i, s in enumerate(input_shape))
    net = Network(body, input_shape)
    if len(net.output_shape) != 1:
        raise ValueError(
            f"the network's output must be one vector per example, shape (n_out,), for the losses; its "
            f"layers give {net.output_shape}: end with fb.layers.Flatten() and fb.layers.Dense(n_out)"
        )
    return net
