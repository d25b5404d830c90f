"""``Serial``: layers applied in order, and the walks over them, each written once.

``Serial`` is itself a layer (it follows the protocol of ``base.py``; its ``theta`` is the tuple of
its layers' parameters, one entry per layer that has any), so serial blocks nest, inside each other
and inside ``Residual``. It owns the two walks every quantity is made of:

- forward: ``x_1 = x``, ``x_{k+1}, cache_k = layer_k.forward(theta_k, x_k)``; with a direction ``v``,
  the R-forward beside it (``forward_r``);
- reverse, from ``g = dC/dy`` at the last layer to the first (``walk_back``): at each layer the
  readout a quantity asks for, then the second-order step ``H <- layer.backward2(H, g)`` when ``H``
  is carried, the R-step when ``R{g}`` is carried, and the step of backpropagation
  ``g <- J^T g`` with ``dC/dtheta`` (BP2-BP4).

A quantity is one walk and one readout: the gradient is ``walk_back``'s ``grads``; per-example
gradients read ``per_example_grads`` at each layer; the exact Hessian diagonal carries ``H`` and reads
``hessian_diag``; the Jacobian rows are per-example gradients seeded with unit vectors (vmapped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .base import REQUIRED, gram_from_rows


class SerialCache(NamedTuple):
    """What ``Serial.forward`` keeps: ``inputs[k]``, what layer ``k`` received; ``caches[k]``, its cache."""

    inputs: tuple
    caches: tuple


class Back(NamedTuple):
    """The result of one reverse walk (``Serial.walk_back``).

    Attributes:
        g: ``dC/dx`` at the walk's input.
        grads: ``dC/dtheta``, one entry per layer with parameters (the ``theta`` tuple's layout).
        g_out: per layer, the gradient that arrived at its output (``delta`` above a layer with
            parameters).
        reads: per layer with parameters, the readout (``()`` when none was asked for).
        H: ``d2C/dx_n^2`` at the walk's input, or ``None`` when no ``H`` was carried.
        r_g: ``R{dC/dx}``, or ``None`` when no R-values were carried.
        r_grads: ``R{dC/dtheta} = H v`` per layer with parameters, or ``()``.
    """

    g: Any
    grads: tuple
    g_out: tuple
    reads: tuple
    H: Any = None
    r_g: Any = None
    r_grads: tuple = ()


def _check_layer_kind(layer, position: int):
    missing = [m for m in REQUIRED if not callable(getattr(layer, m, None))]
    if missing or not isinstance(getattr(layer, "has_params", None), bool):
        what = f"methods {missing}" if missing else "a has_params attribute (True or False)"
        raise TypeError(
            f"layer {position} ({layer!r}) is not an fbackprop layer: it lacks {what}. A layer is an object "
            "with has_params, init, forward, backward (and forward_r, backward_r, backward2 for curvature): "
            "see fb.layers (the protocol) or use fb.layers.Dense, Conv2D, ..."
        )


def leaves(serial: Serial, prefix: str = "layer "):
    """The layers in ``serial`` that are not combinators, and their names (``"layer 4 Residual > 1 Conv2D"``).

    Args:
        serial: a ``Serial``.
        prefix: the start of every name.

    Yields:
        ``(name, layer)`` pairs, first first.
    """
    for k, layer in enumerate(serial.layers, 1):
        name = f"{prefix}{k} {type(layer).__name__}"
        inner = layer if isinstance(layer, Serial) else getattr(layer, "block", None)
        if isinstance(inner, Serial):
            yield from leaves(inner, f"{name} > ")
        else:
            yield name, layer


def read(name: str, exact: bool = True):
    """The readout ``name`` as the walk calls it, ``(layer, theta, cache, g, H) -> value``.

    Args:
        name: one of ``fbackprop.layers.base.READOUTS``.
        exact: passed to the curvature readouts (the Hessian's, or the GGN's when False).

    Returns:
        The callable.
    """
    if name == "per_example_grads":
        return lambda layer, theta, cache, g, H: layer.per_example_grads(theta, cache, g)
    return lambda layer, theta, cache, g, H: getattr(layer, name)(theta, cache, H, g, exact)


@dataclass(frozen=True, init=False)
class Serial:
    """Layers applied in order, ``y = layer_K(... layer_1(x))``; a layer itself, so it nests.

    Attributes:
        layers: the layers, first first.

    Examples:
        >>> block = fb.layers.Serial(fb.layers.Dense(4), fb.layers.Activation("tanh"))
        >>> theta, out_shape = block.init(jax.random.key(0), (3,), jnp.float64)
        >>> len(theta), out_shape      # one entry per layer with parameters
        (1, (4,))
    """

    layers: tuple

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for k, layer in enumerate(layers, 1):
            _check_layer_kind(layer, k)
        object.__setattr__(self, "layers", tuple(layers))

    def __repr__(self) -> str:
        return f"Serial({', '.join(map(repr, self.layers))})"

    @property
    def has_params(self) -> bool:
        """Whether any of its layers has parameters."""
        return any(layer.has_params for layer in self.layers)

    def thetas(self, theta) -> list:
        """``theta`` laid out by layer: the entries in order for layers with parameters, ``None`` elsewhere.

        Args:
            theta: the tuple of parameters (one entry per layer with parameters), or ``None``.

        Returns:
            A list with one entry per layer.
        """
        it = iter(() if theta is None else theta)
        return [next(it) if layer.has_params else None for layer in self.layers]

    def init(self, key, in_shape, dtype):
        """Each layer's ``init`` in order, the shape threaded through; one key per layer with parameters.

        Args:
            key: a ``jax.random`` key, split into one per layer with parameters.
            in_shape: one example's input shape.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, out_shape)``: ``theta`` a tuple with one entry per layer with parameters (``None``
            when none has any, as for any layer without parameters).
        """
        n_keys = sum(layer.has_params for layer in self.layers)
        keys = iter(jax.random.split(key, n_keys) if n_keys else ())
        theta, shape = [], tuple(in_shape)
        for k, layer in enumerate(self.layers, 1):
            try:
                th, shape = layer.init(next(keys) if layer.has_params else None, shape, dtype)
            except ValueError as err:
                raise ValueError(f"layer {k} {type(layer).__name__}: {err}") from None
            shape = tuple(shape)
            if layer.has_params:
                theta.append(th)
        return (tuple(theta) if self.has_params else None), shape

    def forward(self, theta, x):
        """The forward walk.

        Args:
            theta: the tuple of parameters.
            x: ``(N, *in_shape)``.

        Returns:
            ``(y, SerialCache(inputs, caches))``.
        """
        inputs, caches = [], []
        for layer, th in zip(self.layers, self.thetas(theta)):
            inputs.append(x)
            x, cache = layer.forward(th, x)
            caches.append(cache)
        return x, SerialCache(tuple(inputs), tuple(caches))

    def forward_r(self, theta, v, cache, r_x):
        """The R-forward walk: ``R{x_{k+1}} = layer_k.forward_r(theta_k, v_k, cache_k, R{x_k})``.

        Args:
            theta: the tuple of parameters.
            v: the direction, shaped like ``theta``.
            cache: ``forward``'s ``SerialCache``.
            r_x: ``R{x}`` or ``None`` (an input that does not move).

        Returns:
            ``(R{y}, r_caches)``.
        """
        r_caches = []
        for layer, th, v_th, c in zip(self.layers, self.thetas(theta), self.thetas(v), cache.caches):
            r_x, r_cache = layer.forward_r(th, v_th, c, r_x)
            r_caches.append(r_cache)
        return r_x, tuple(r_caches)

    def walk_back(self, theta, cache, g, *, readout=None, H=None, exact=True, v=None, r_cache=None, r_g=None):
        """The reverse walk, from the last layer to the first (module docstring).

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            g: ``dC/dy: (N, *out_shape)``.
            readout: ``(layer, theta, cache, g, H) -> value``, read at each layer with parameters before
                its step (``read(name)``), or ``None``.
            H: ``d2C/dy_n^2: (N, n_out, n_out)`` to carry back (second-order backprop), or ``None``.
            exact: keep the second-derivative terms of ``backward2`` (default True; False: the GGN).
            v: the direction of the R-operator, shaped like ``theta``, when ``R{g}`` is carried.
            r_cache: ``forward_r``'s R-caches, with ``v``.
            r_g: ``R{dC/dy}``, with ``v``.

        Returns:
            A ``Back``.
        """
        layers = list(zip(self.layers, self.thetas(theta), cache.caches))
        v_ths = self.thetas(v) if r_g is not None else [None] * len(layers)
        r_cs = r_cache if r_g is not None else [None] * len(layers)
        grads, g_out, reads, r_grads = [], [], [], []
        for (layer, th, c), v_th, r_c in reversed(list(zip(layers, v_ths, r_cs))):
            g_out.append(g)
            if readout is not None and layer.has_params:
                reads.append(readout(layer, th, c, g, H))
            if H is not None:
                H = layer.backward2(th, c, H, g, exact)  # second-order backprop: A from H and g
            if r_g is not None:
                r_g, r_dth = layer.backward_r(th, v_th, c, r_c, g, r_g)  # uses g before it moves on
                if layer.has_params:
                    r_grads.append(r_dth)
            g, dth = layer.backward(th, c, g)  # (BP2) and the layer's (BP3, BP4)
            if layer.has_params:
                grads.append(dth)
        return Back(
            g, tuple(grads[::-1]), tuple(g_out[::-1]), tuple(reads[::-1]), H, r_g, tuple(r_grads[::-1])
        )

    def backward(self, theta, cache, g):
        """Backpropagation through the layers (BP2-BP4).

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            g: ``dC/dy``.

        Returns:
            ``(dC/dx, dC/dtheta)``.
        """
        back = self.walk_back(theta, cache, g)
        return back.g, back.grads

    def backward_r(self, theta, v, cache, r_cache, g, r_g):
        """The R-operator of ``backward``.

        Args:
            theta: the tuple of parameters.
            v: the direction, shaped like ``theta``.
            cache: ``forward``'s ``SerialCache``.
            r_cache: ``forward_r``'s R-caches.
            g: ``dC/dy``.
            r_g: ``R{dC/dy}``.

        Returns:
            ``(R{dC/dx}, R{dC/dtheta})``.
        """
        back = self.walk_back(theta, cache, g, v=v, r_cache=r_cache, r_g=r_g)
        return back.r_g, back.r_grads

    def backward2(self, theta, cache, H, g, exact=True):
        """Second-order backpropagation through the layers.

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            H: ``(N, n_out, n_out)``.
            g: ``dC/dy``.
            exact: keep the second-derivative terms (default True).

        Returns:
            ``A = d2C/dx_n^2: (N, n_in, n_in)``.
        """
        return self.walk_back(theta, cache, g, H=H, exact=exact).H

    def per_example_grads(self, theta, cache, g):
        """Each layer's ``per_example_grads`` at the ``g`` the walk brings it.

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            g: ``dl_n/dy_n``, one row per example.

        Returns:
            A tuple shaped like ``theta``, every leaf with a leading ``N`` axis.
        """
        return self.walk_back(theta, cache, g, readout=read("per_example_grads")).reads

    def _curvature_read(self, name, theta, cache, H, g, exact):
        return self.walk_back(theta, cache, g, readout=read(name, exact), H=H, exact=exact).reads

    def hessian_diag(self, theta, cache, H, g, exact=True):
        """Each layer's ``hessian_diag`` at the ``H`` and ``g`` the walk brings it.

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            H: ``(N, n_out, n_out)``.
            g: ``dC/dy``.
            exact: the Hessian's (True) or the GGN's diagonal.

        Returns:
            A tuple shaped like ``theta``.
        """
        return self._curvature_read("hessian_diag", theta, cache, H, g, exact)

    def per_example_hessian_diag(self, theta, cache, H, g, exact=True):
        """Each layer's ``per_example_hessian_diag`` (arguments as ``hessian_diag``).

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            H: ``(N, n_out, n_out)``, per example.
            g: ``dl_n/dy_n``.
            exact: the Hessian's (True) or the GGN's diagonal.

        Returns:
            A tuple shaped like ``theta``, leaves with a leading ``N`` axis.
        """
        return self._curvature_read("per_example_hessian_diag", theta, cache, H, g, exact)

    def hessian_block(self, theta, cache, H, g, exact=True):
        """Each layer's ``hessian_block`` (arguments as ``hessian_diag``).

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            H: ``(N, n_out, n_out)``.
            g: ``dC/dy``.
            exact: the Hessian's (True) or the GGN's blocks.

        Returns:
            A tuple with one entry per layer with parameters: its ``(P_l, P_l)`` block (a tuple of
            blocks for a nested block).
        """
        return self._curvature_read("hessian_block", theta, cache, H, g, exact)

    def kfac_factors(self, theta, cache, G):
        """Each layer's ``kfac_factors`` at the output gradients the walk brings it.

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            G: ``(K, N, *out_shape)``, ``K`` columns of per-example output gradients.

        Returns:
            A tuple with one ``KFactors`` per layer with parameters (a tuple for a nested block).
        """
        g_out = jax.vmap(lambda g: self.walk_back(theta, cache, g).g_out)(G)  # per layer (K, N, *out_k)
        return tuple(
            layer.kfac_factors(th, c, G_k)
            for layer, th, c, G_k in zip(self.layers, self.thetas(theta), cache.caches, g_out)
            if layer.has_params
        )

    def jacobian_gram(self, theta, cache, G):
        """``sum_p J_nk,p J_mj,p`` over all its parameters: the layers' contributions, summed.

        Args:
            theta: the tuple of parameters.
            cache: ``forward``'s ``SerialCache``.
            G: ``(K, N, *out_shape)``: the output gradients of ``K`` unit-seeded backward passes.

        Returns:
            ``(N, K, N, K)``.
        """
        g_out = jax.vmap(lambda g: self.walk_back(theta, cache, g).g_out)(G)  # per layer (K, N, *out_k)
        K = jnp.zeros((G.shape[1], G.shape[0]) * 2, G.dtype)
        for layer, th, c, G_k in zip(self.layers, self.thetas(theta), cache.caches, g_out):
            if layer.has_params:
                gram = getattr(layer, "jacobian_gram", None)
                K = K + (gram(th, c, G_k) if gram is not None else gram_from_rows(layer, th, c, G_k))
        return K
