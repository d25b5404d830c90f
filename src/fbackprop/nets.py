"""Networks as a sequence of small layer pieces, each a few pure functions.

Conventions (the matrix form of backpropagation, Rumelhart, Hinton & Williams 1986, in batch rows):

- ``x: (N, n_in)``; a dense layer has ``W: (fan_out, fan_in)``, ``b: (fan_out,)`` and computes
  ``z = a_prev @ W.T + b``; an activation layer computes ``a = f(z)``.
- Parameters are a tuple with one ``{"W", "b"}`` dict per dense layer, first layer first;
  activation layers have none.

A layer kind is a NamedTuple with ``forward(theta, inp) -> out`` and ``backward(theta, inp, g) ->
(g_inp, dtheta)`` (``g = dC/d out``): the dense layer's is ``db = sum(delta)`` (BP3), ``dW = delta.T @
a_prev`` (BP4), ``dC/da_prev = delta @ W``; the activation's ``delta = f'(z) * dC/da``; together the
recursion (BP2). The walk over the layers lives in ``backprop.py``; no layer knows about any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import activations as _act
from .initializers import INITIALIZERS
from .validate import as_int, check_inputs

Params = tuple[dict[str, jax.Array], ...]


# --- layer pieces -----------------------------------------------------------------------------
class Dense(NamedTuple):
    """A dense layer, ``z = a_prev @ W.T + b`` with ``W: (n_out, n_in)``, ``b: (n_out,)``.

    Attributes:
        n_in: fan-in.
        n_out: fan-out.
        init_name: the initializer's name in ``INITIALIZERS`` (default ``"glorot"``).
    """

    n_in: int
    n_out: int
    init_name: str = "glorot"

    has_params = True

    def init(self, key, dtype) -> dict[str, jax.Array]:
        """Fresh ``{"W": (n_out, n_in), "b": (n_out,)}`` of ``dtype`` from ``key``."""
        W, b = INITIALIZERS[self.init_name](key, (self.n_out, self.n_in), dtype)
        return {"W": W, "b": b}

    def forward(self, theta, a_prev):
        """The forward line ``z = a_prev @ W.T + b``.

        Args:
            theta: ``{"W": (n_out, n_in), "b": (n_out,)}``.
            a_prev: the previous layer's activations ``(N, n_in)``.

        Returns:
            ``z: (N, n_out)``.
        """
        return a_prev @ theta["W"].T + theta["b"]

    def backward(self, theta, a_prev, delta):
        """The layer's part of the backward pass: (BP3), (BP4) and the first half of (BP2).

        Args:
            theta: ``{"W", "b"}``.
            a_prev: what ``forward`` saw, ``(N, n_in)``.
            delta: ``dC/dz: (N, n_out)``.

        Returns:
            ``(dC/da_prev: (N, n_in), {"W": dW: (n_out, n_in), "b": db: (n_out,)})``, summed over the batch.
        """
        dW = delta.T @ a_prev  # (BP4) dC/dW^l = delta^l (a^{l-1})^T, summed over the batch
        db = jnp.sum(delta, axis=0)  # (BP3) dC/db^l = delta^l, summed over the batch
        g = delta @ theta["W"]  # (BP2, first half) (W^l)^T delta^l
        return g, {"W": dW, "b": db}

    def per_example_grads(self, a_prev, delta):
        """The gradients of each example: ``dW_n = delta_n a_prev_n^T``, ``db_n = delta_n``.

        Args:
            a_prev: ``(N, n_in)``.
            delta: ``(N, n_out)``, each row ``dl_n/dz_n``.

        Returns:
            ``{"W": (N, n_out, n_in), "b": (N, n_out)}``.
        """
        return {"W": delta[:, :, None] * a_prev[:, None, :], "b": delta}

    # Pearlmutter's R-operator, R{.} = d/dr (.)(params + r v) at r = 0 (the tangent of each line above)
    def forward_r(self, theta, v, a_prev, r_a_prev):
        """The R-operator of ``forward`` (Pearlmutter 1994).

        ``R{z} = R{a_prev} @ W.T + a_prev @ V_W.T + v_b``.

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}`` for this layer.
            a_prev: ``(N, n_in)``.
            r_a_prev: ``R{a_prev}: (N, n_in)``, or ``None`` for the input ``x`` (which does not move).

        Returns:
            ``R{z}: (N, n_out)``.
        """
        r_z = a_prev @ v["W"].T + v["b"]
        return r_z if r_a_prev is None else r_z + r_a_prev @ theta["W"].T

    def backward_r(self, theta, v, a_prev, r_a_prev, delta, r_delta):
        """The R-operator of ``backward``.

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}``.
            a_prev: ``(N, n_in)``; ``r_a_prev``: its R-value or ``None`` for the input.
            r_a_prev: see ``a_prev``.
            delta: ``(N, n_out)``.
            r_delta: ``R{delta}: (N, n_out)``.

        Returns:
            ``(R{dC/da_prev}: (N, n_in), {"W": R{dW}, "b": R{db}})``.
        """
        r_dW = r_delta.T @ a_prev if r_a_prev is None else r_delta.T @ a_prev + delta.T @ r_a_prev
        return r_delta @ theta["W"] + delta @ v["W"], {"W": r_dW, "b": jnp.sum(r_delta, axis=0)}

    # second-order backpropagation, per example: H = d2C/dz dz, A = d2C/da da
    def backward2(self, theta, a_prev, H, g=None, exact=True):
        """Second-order backpropagation through the layer: ``A^{l-1} = (W^l)^T H^l W^l``.

        ``z`` is linear in ``a_prev``, so there is no second-derivative term: ``g`` and ``exact`` are
        accepted for a uniform layer interface and not used.

        Args:
            theta: ``{"W", "b"}``.
            a_prev: ``(N, n_in)`` (not used).
            H: ``d2l_n/dz_n^2: (N, n_out, n_out)``.
            g: not used.
            exact: not used.

        Returns:
            ``A = d2l_n/da_prev^2: (N, n_in, n_in)``.
        """
        W = theta["W"]
        return W.T @ H @ W

    def hessian_diag(self, a_prev, H):
        """The exact Hessian diagonal of the layer's parameters.

        Args:
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)``, per example (carrying the cost's ``1/N``).

        Returns:
            ``{"W": d2C/dW_ij^2 = sum_n a_nj^2 H_n,ii, "b": d2C/db_i^2 = sum_n H_n,ii}``, shaped like theta.
        """
        h = jnp.diagonal(H, axis1=1, axis2=2)  # (N, n_out)
        return {"W": h.T @ (a_prev * a_prev), "b": jnp.sum(h, axis=0)}

    def per_example_hessian_diag(self, a_prev, H):
        """``hessian_diag`` before the sum over examples.

        Args:
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)``.

        Returns:
            ``{"W": (N, n_out, n_in), "b": (N, n_out)}``.
        """
        h = jnp.diagonal(H, axis1=1, axis2=2)
        return {"W": h[:, :, None] * (a_prev * a_prev)[:, None, :], "b": h}

    def hessian_block(self, a_prev, H):
        """The exact ``(P_l, P_l)`` block of ``W^l, b^l`` jointly, ``P_l = n_out (n_in + 1)``, ordered as
        ``ravel_pytree`` orders ``{"W", "b"}`` (W row-major, then b): ``sum_n H_n (x) abar_n abar_n^T``
        with ``abar = [a_prev, 1]``, since ``z = W a + b`` is linear in ``W, b``.

        Args:
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)``.

        Returns:
            The ``(P_l, P_l)`` matrix.
        """
        n, n_in = a_prev.shape
        abar = jnp.concatenate([a_prev, jnp.ones((n, 1), a_prev.dtype)], axis=1)
        G = jnp.einsum("nik,nj,nl->ijkl", H, abar, abar)  # (n_out, n_in + 1, n_out, n_in + 1)
        m = self.n_out * n_in
        WW = G[:, :n_in, :, :n_in].reshape(m, m)
        Wb = G[:, :n_in, :, n_in].reshape(m, self.n_out)
        bb = G[:, n_in, :, n_in]
        return jnp.block([[WW, Wb], [Wb.T, bb]])


class Activate(NamedTuple):
    """An activation layer, ``a = f(z)`` elementwise; no parameters.

    Attributes:
        activation: the ``Activation`` (``f``, ``f'``, ``f''``).
    """

    activation: _act.Activation

    has_params = False

    def forward(self, theta, z):
        """``a = f(z)``, any shape (``theta`` is ``None``: no parameters)."""
        return self.activation.f(z)

    def backward(self, theta, z, g):
        """The second half of (BP2): ``delta = f'(z) * dC/da``.

        Args:
            theta: ``None``.
            z: what ``forward`` saw, ``(N, n)``.
            g: ``dC/da: (N, n)``.

        Returns:
            ``(delta: (N, n), None)``.
        """
        return self.activation.df(z) * g, None  # (BP2, second half) delta = f'(z) * dC/da

    def forward_r(self, theta, v, z, r_z):
        """The R-operator of ``forward``: ``R{a} = f'(z) * R{z}`` (``theta``, ``v``: ``None``)."""
        return self.activation.df(z) * r_z

    def backward_r(self, theta, v, z, r_z, g, r_g):
        """The R-operator of ``backward``: ``R{delta} = f''(z) * R{z} * g + f'(z) * R{g}``.

        Args:
            theta: ``None``.
            v: ``None``.
            z: ``(N, n)``; ``r_z``: ``R{z}``.
            r_z: see ``z``.
            g: ``dC/da: (N, n)``; ``r_g``: ``R{g}``.
            r_g: see ``g``.

        Returns:
            ``(R{delta}: (N, n), None)``.
        """
        return self.activation.d2f(z) * r_z * g + self.activation.df(z) * r_g, None

    def backward2(self, theta, z, A, g, exact: bool = True):
        """Second-order backpropagation through ``f``: ``H = f'(z) f'(z)^T * A + diag(f''(z) * g)``.

        Args:
            theta: ``None``.
            z: ``(N, n)``.
            A: ``d2l_n/da_n^2: (N, n, n)``.
            g: ``dC/da: (N, n)``.
            exact: keep the ``f''`` term (default True); False drops it: the generalized
                Gauss-Newton recursion (Schraudolph 2002).

        Returns:
            ``H = d2l_n/dz_n^2: (N, n, n)``.
        """
        fp = self.activation.df(z)
        H = fp[:, :, None] * A * fp[:, None, :]
        if exact:
            H = H + (self.activation.d2f(z) * g)[:, :, None] * jnp.eye(z.shape[1], dtype=z.dtype)
        return H


Layer = Dense | Activate


class Network(NamedTuple):
    """A feed-forward network: ``layers`` applied in order. Build one with ``mlp``."""

    layers: tuple[Layer, ...]

    @property
    def dense(self) -> tuple[Dense, ...]:
        return tuple(l for l in self.layers if isinstance(l, Dense))

    @property
    def sizes(self) -> tuple[int, ...]:
        d = self.dense
        return (d[0].n_in,) + tuple(l.n_out for l in d)

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def n_params(self) -> int:
        return sum(l.n_out * (l.n_in + 1) for l in self.dense)

    def init(self, key: jax.Array, dtype: Any = None) -> Params:
        """Fresh parameters from the layers' initializers.

        Args:
            key: a ``jax.random`` key.
            dtype: the parameters' floating dtype (default ``None``: float64 when x64 is on, else float32).

        Returns:
            A tuple with one ``{"W": (fan_out, fan_in), "b": (fan_out,)}`` dict per dense layer.
        """
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
        keys = jax.random.split(key, len(self.dense))
        return tuple(l.init(k, dtype) for l, k in zip(self.dense, keys))

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """The forward pass: the network output for a batch.

        Args:
            params: a tuple of ``{"W", "b"}`` dicts, one per dense layer (shapes checked).
            x: inputs ``(N, n_in)``, one example per row.

        Returns:
            ``yhat: (N, n_out)`` (logits or linear outputs unless ``output`` says otherwise).
        """
        x = check_inputs(self, params, x)
        a = x
        for layer, theta in zip(self.layers, layer_params(self, params)):
            a = layer.forward(theta, a)
        return a

    def __repr__(self) -> str:
        acts = [l.activation.name for l in self.layers if isinstance(l, Activate)]
        return f"Network(sizes={list(self.sizes)}, activations={acts})"


def layer_params(net: Network, params: Params) -> list:
    """The parameters laid out by ``net.layers``.

    Args:
        net: the network.
        params: one ``{"W", "b"}`` dict per dense layer.

    Returns:
        A list with one entry per layer: the dense layers' dicts in order, ``None`` for activations.
    """
    it = iter(params)
    return [next(it) if layer.has_params else None for layer in net.layers]


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
    layers: list[Layer] = []
    for n_in, n_out, act in zip(sizes[:-1], sizes[1:], acts):
        layers += [Dense(n_in, n_out, init), Activate(act)]
    return Network(tuple(layers))
