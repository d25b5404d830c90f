"""The activation layer: ``a = f(z)`` elementwise, any shape; no parameters.

Its part of backpropagation is the second half of (BP2), ``delta = f'(z) * dC/da``; its R-operator
``R{a} = f'(z) R{z}`` and ``R{delta} = f''(z) R{z} dC/da + f'(z) R{dC/da}`` (Pearlmutter 1994); its
second-order backward ``H = f'(z) f'(z)^T * A + diag(f''(z) * dC/da)`` (Bishop 1992), whose
``f''`` term ``exact=False`` drops (the generalized Gauss-Newton matrix, Schraudolph 2002).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import activations as _act
from .base import add_diag, flat


@dataclass(frozen=True)
class Activation:
    """An elementwise activation layer.

    Attributes:
        activation: a name in ``fb.activations.ACTIVATIONS`` (``"tanh"``, ``"relu"``, ...: 11 of them)
            or an ``fb.activations.Activation(name, f, df, d2f)`` of your own.

    Examples:
        >>> layer = fb.layers.Activation("tanh")
        >>> layer
        Activation('tanh')
        >>> a, z = layer.forward(None, jnp.zeros((2, 3)))
        >>> a.shape
        (2, 3)
    """

    activation: str | _act.Activation

    has_params = False

    def __post_init__(self):
        object.__setattr__(self, "activation", _act.get(self.activation))

    def __repr__(self) -> str:
        return f"Activation({self.activation.name!r})"

    @property
    def f(self):
        """The ``fb.activations.Activation`` (``f``, ``df``, ``d2f``)."""
        return self.activation

    def init(self, key, in_shape, dtype):
        """No parameters; the output shape is the input shape.

        Args:
            key: not used.
            in_shape: one example's shape.
            dtype: not used.

        Returns:
            ``(None, in_shape)``.
        """
        return None, tuple(in_shape)

    def forward(self, theta, z):
        """``a = f(z)``.

        Args:
            theta: ``None``.
            z: ``(N, *shape)``.

        Returns:
            ``(a, z)``: the cache is the pre-activation.
        """
        return self.activation.f(z), z

    def backward(self, theta, z, g):
        """The second half of (BP2): ``delta = f'(z) * dC/da``.

        Args:
            theta: ``None``.
            z: the cache.
            g: ``dC/da``, shaped like ``z``.

        Returns:
            ``(delta, None)``.
        """
        return self.activation.df(z) * g, None  # (BP2, second half) delta = f'(z) * dC/da

    def forward_r(self, theta, v, z, r_z):
        """``R{a} = f'(z) * R{z}``.

        Args:
            theta: ``None``.
            v: ``None``.
            z: the cache.
            r_z: ``R{z}``, or ``None`` for an input that does not move.

        Returns:
            ``(R{a}, R{z})`` (``(None, None)`` when ``r_z`` is ``None``).
        """
        return (None if r_z is None else self.activation.df(z) * r_z), r_z

    def backward_r(self, theta, v, z, r_z, g, r_g):
        """``R{delta} = f''(z) * R{z} * g + f'(z) * R{g}``.

        Args:
            theta: ``None``.
            v: ``None``.
            z: the cache.
            r_z: the R-cache, ``R{z}`` or ``None``.
            g: ``dC/da``.
            r_g: ``R{dC/da}``.

        Returns:
            ``(R{delta}, None)``.
        """
        r_delta = self.activation.df(z) * r_g
        return (r_delta if r_z is None else r_delta + self.activation.d2f(z) * r_z * g), None

    def backward2(self, theta, z, A, g, exact=True):
        """``H = f'(z) f'(z)^T * A + diag(f''(z) * g)``.

        Args:
            theta: ``None``.
            z: the cache, ``(N, *shape)``.
            A: ``d2C/da_n^2: (N, n, n)``, ``n = prod(shape)``.
            g: ``dC/da``, shaped like ``z``.
            exact: keep the ``f''`` term (default True); False: the GGN recursion.

        Returns:
            ``H = d2C/dz_n^2: (N, n, n)``.
        """
        fp = flat(self.activation.df(z))
        H = fp[:, :, None] * A * fp[:, None, :]
        return add_diag(H, flat(self.activation.d2f(z) * g)) if exact else H
