"""Pooling layers on ``(N, H, W, C)`` images: average and max over windows, channel by channel; no parameters.

With ``P = unfold(x): (N, Ho, Wo, kh kw, C)`` the windows' entries (``layers.patches``; ``"VALID"``
windows, ``stride`` defaulting to the window):

- average pooling ``y = mean_j P[:, :, :, j, :]`` is linear in ``x``: its backward spreads ``g``
  evenly, ``dC/dx = fold(g / (kh kw))``; its R-operator is itself, ``R{y} = mean_j unfold(R{x})``; its
  second-order backward ``A = J^T H J`` has no curvature term (``base.congruence``).
- max pooling ``y = max_j P[:, :, :, j, :]`` routes the gradient to the arg-max of each window,
  ``dC/dx = fold(m * g)`` with the routing mask ``m = [P == y] / count`` (ties share the gradient
  equally, exactly as JAX's derivative of ``jnp.max``); ``R{y} = sum_j m_j R{P_j}``. ``y`` is
  piecewise linear in ``x`` (linear wherever the arg-max does not change), so its second derivative
  is zero almost everywhere and ``A = J^T H J`` with the routing ``J``, exact and GGN
  alike; ``R{m} = 0`` likewise.

Memory: ``H`` at the output is ``(N, n_out, n_out)``, ``n_out = Ho Wo C``, and ``A`` at the input
``(N, n_in, n_in)``, ``n_in = H W C``; max pooling caches its mask, ``kh kw / (sh sw)`` times ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .base import congruence
from .patches import as_pair, check_image_shape, fold, out_shape, unfold


@dataclass(frozen=True)
class _Pool2D:
    """The window geometry both pooling layers share (``window``, ``stride`` as pairs; ``"VALID"``)."""

    window: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None

    has_params = False

    def __post_init__(self):
        name = type(self).__name__
        window = as_pair(self.window, f"{name} window")
        object.__setattr__(self, "window", window)
        stride = window if self.stride is None else as_pair(self.stride, f"{name} stride")
        object.__setattr__(self, "stride", stride)

    def _out_shape(self, in_shape):
        """``(Ho, Wo, C)`` from ``(H, W, C)``."""
        return out_shape(in_shape, self.window, self.stride, "VALID")

    def init(self, key, in_shape, dtype):
        """No parameters; the output shape ``(Ho, Wo, C)``, ``Ho = (H - kh) // sh + 1``.

        Args:
            key: not used.
            in_shape: one example's shape, ``(H, W, C)``.
            dtype: not used.

        Returns:
            ``(None, (Ho, Wo, C))``.

        Raises:
            ValueError: for an input shape that is not ``(H, W, C)`` or smaller than the window.
        """
        return None, self._out_shape(check_image_shape(in_shape, self.window, "VALID", repr(self)))

    def _unfold(self, x):
        """``(N, H, W, C) -> (N, Ho, Wo, kh kw, C)``: the windows."""
        return unfold(x, self.window, self.stride, "VALID")

    def _input(self, cache):
        """The input ``x`` kept in the forward's cache (the cache itself for average pooling)."""
        return cache

    def _fold(self, dP, x):
        """``(N, Ho, Wo, kh kw, C) -> (N, H, W, C)``, the transpose of ``_unfold`` (``x`` gives the shape)."""
        return fold(dP, x.shape[1:], self.window, self.stride, "VALID")

    def backward2(self, theta, cache, H, g=None, exact=True):
        """``A = J^T H J``: the layer is linear in ``x`` (max pooling: almost everywhere), so there is no
        second-derivative term (``g``, ``exact`` unused); ``J^T`` is the input backward, applied to the
        columns of ``H`` and then of ``J^T H`` (``base.congruence``).

        Args:
            theta: ``None``.
            cache: the forward's cache.
            H: ``d2C/dy_n^2: (N, n_out, n_out)`` over the flattened ``(Ho, Wo, C)``, row-major.
            g: not used.
            exact: not used.

        Returns:
            ``A = d2C/dx_n^2: (N, n_in, n_in)`` over the flattened ``(H, W, C)``.
        """

        def jt(g_out):
            return self.backward(theta, cache, g_out)[0]

        return congruence(jt, H, self._out_shape(self._input(cache).shape[1:]))

    def backward_r(self, theta, v, cache, r_cache, g, r_g):
        """``R{dC/dx} = backward(R{g})``: the backward is linear in ``g`` and (max pooling: almost
        everywhere) does not depend on ``x``.

        Args:
            theta: ``None``.
            v: ``None``.
            cache: the forward's cache.
            r_cache: not used.
            g: not used.
            r_g: ``R{dC/dy}: (N, Ho, Wo, C)``.

        Returns:
            ``(R{dC/dx}: (N, H, W, C), None)``.
        """
        return self.backward(theta, cache, r_g)[0], None


@dataclass(frozen=True)
class AvgPool2D(_Pool2D):
    """Average pooling over ``window``-sized windows (``"VALID"``: no padding), channel by channel.

    Attributes:
        window: ``(kh, kw)``, or one int for a square window (stored as a pair).
        stride: ``(sh, sw)``, or one int (default ``None``: the window, non-overlapping windows).

    Examples:
        >>> layer = fb.layers.AvgPool2D((2, 2))
        >>> layer.init(jax.random.key(0), (5, 7, 3), jnp.float64)
        (None, (2, 3, 3))
        >>> y, _ = layer.forward(None, jnp.ones((1, 4, 4, 1)))
        >>> y.shape
        (1, 2, 2, 1)
    """

    def forward(self, theta, x):
        """``y = mean`` of each window.

        Args:
            theta: ``None``.
            x: ``(N, H, W, C)``.

        Returns:
            ``(y: (N, Ho, Wo, C), x)``: the cache is the input (its shape).
        """
        return jnp.mean(self._unfold(x), axis=3), x

    def backward(self, theta, x, g):
        """``dC/dx = fold(g / (kh kw))``: each window's gradient shared evenly by its entries.

        Args:
            theta: ``None``.
            x: the cache.
            g: ``dC/dy: (N, Ho, Wo, C)``.

        Returns:
            ``(dC/dx: (N, H, W, C), None)``.
        """
        kk = self.window[0] * self.window[1]
        dP = jnp.broadcast_to((g / kk)[:, :, :, None, :], g.shape[:3] + (kk, g.shape[3]))
        return self._fold(dP, x), None

    def forward_r(self, theta, v, x, r_x):
        """``R{y} = mean`` of each window of ``R{x}`` (linear).

        Args:
            theta: ``None``.
            v: ``None``.
            x: the cache.
            r_x: ``R{x}: (N, H, W, C)``, or ``None`` for an input that does not move.

        Returns:
            ``(R{y}, None)`` (``(None, None)`` when ``r_x`` is ``None``).
        """
        return (None if r_x is None else self.forward(theta, r_x)[0]), None

    def reference(self, theta, x):
        """``forward``'s output through ``jax.lax.reduce_window`` (a sum, divided by ``kh kw``).

        Args:
            theta: ``None``.
            x: ``(N, H, W, C)``.

        Returns:
            ``y: (N, Ho, Wo, C)``.
        """
        (kh, kw), (sh, sw) = self.window, self.stride
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, kh, kw, 1), (1, sh, sw, 1), "VALID")
        return total / (kh * kw)


class MaxPoolCache(NamedTuple):
    """What ``MaxPool2D.forward`` keeps for the backward passes.

    Attributes:
        x: the input, ``(N, H, W, C)`` (its shape places the folded gradient).
        mask: the routing, ``(N, Ho, Wo, kh kw, C)``: ``1 / count`` at each window's maxima, else 0.
    """

    x: jax.Array
    mask: jax.Array


@dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """Max pooling over ``window``-sized windows (``"VALID"``: no padding), channel by channel.

    Attributes:
        window: ``(kh, kw)``, or one int for a square window (stored as a pair).
        stride: ``(sh, sw)``, or one int (default ``None``: the window, non-overlapping windows).

    Examples:
        >>> layer = fb.layers.MaxPool2D(2)
        >>> layer
        MaxPool2D(window=(2, 2), stride=(2, 2))
        >>> y, _ = layer.forward(None, jnp.arange(16.0).reshape(1, 4, 4, 1))
        >>> y[0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """

    def forward(self, theta, x):
        """``y = max`` of each window, and the routing mask (ties share: ``[P == y] / count``).

        Args:
            theta: ``None``.
            x: ``(N, H, W, C)``.

        Returns:
            ``(y: (N, Ho, Wo, C), MaxPoolCache(x, mask))``.
        """
        P = self._unfold(x)
        y = jnp.max(P, axis=3)
        hit = (P == y[:, :, :, None, :]).astype(x.dtype)
        return y, MaxPoolCache(x, hit / jnp.sum(hit, axis=3, keepdims=True))

    def _input(self, cache):
        """The input ``x`` kept in the ``MaxPoolCache``."""
        return cache.x

    def backward(self, theta, cache, g):
        """``dC/dx = fold(mask * g)``: each window's gradient to its arg-max (shared by ties).

        Args:
            theta: ``None``.
            cache: the ``MaxPoolCache``.
            g: ``dC/dy: (N, Ho, Wo, C)``.

        Returns:
            ``(dC/dx: (N, H, W, C), None)``.
        """
        return self._fold(cache.mask * g[:, :, :, None, :], cache.x), None

    def forward_r(self, theta, v, cache, r_x):
        """``R{y} = sum_j mask_j R{P_j}``, ``R{P} = unfold(R{x})``: the tangent of the arg-max entries.

        Args:
            theta: ``None``.
            v: ``None``.
            cache: the ``MaxPoolCache``.
            r_x: ``R{x}: (N, H, W, C)``, or ``None`` for an input that does not move.

        Returns:
            ``(R{y}, None)`` (``(None, None)`` when ``r_x`` is ``None``).
        """
        return (None if r_x is None else jnp.sum(cache.mask * self._unfold(r_x), axis=3)), None

    def reference(self, theta, x):
        """``forward``'s output through ``jax.lax.reduce_window`` (a max).

        Args:
            theta: ``None``.
            x: ``(N, H, W, C)``.

        Returns:
            ``y: (N, Ho, Wo, C)``.
        """
        (kh, kw), (sh, sw) = self.window, self.stride
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1), "VALID")
