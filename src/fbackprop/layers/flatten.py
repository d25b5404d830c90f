"""The flatten layer: ``(N, *shape) -> (N, prod(shape))``, each example's features in a row, row-major.

It only renames the features: its backward reshapes ``dC/dy`` back to ``(N, *shape)``, its R-operator
is itself, and its second-order backward returns ``H`` unchanged, because ``H: (N, n, n)`` is already
indexed by each example's features flattened row-major, the order of ``y`` (``J = I``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flatten:
    """Flatten each example (e.g. a ``(Ho, Wo, C)`` feature map before a dense head); no parameters.

    Examples:
        >>> layer = fb.layers.Flatten()
        >>> layer.init(jax.random.key(0), (2, 3, 4), jnp.float64)
        (None, (24,))
        >>> y, _ = layer.forward(None, jnp.zeros((5, 2, 3, 4)))
        >>> y.shape
        (5, 24)
    """

    has_params = False

    def init(self, key, in_shape, dtype):
        """No parameters; the output shape ``(prod(in_shape),)``.

        Args:
            key: not used.
            in_shape: one example's shape (any; ``()`` gives ``(1,)``).
            dtype: not used.

        Returns:
            ``(None, (prod(in_shape),))``.
        """
        n = 1
        for d in in_shape:
            n *= d
        return None, (n,)

    def forward(self, theta, x):
        """``y = x.reshape(N, -1)``.

        Args:
            theta: ``None``.
            x: ``(N, *shape)``.

        Returns:
            ``(y: (N, prod(shape)), x)``: the cache is the input (its shape).
        """
        return x.reshape(x.shape[0], -1), x

    def backward(self, theta, x, g):
        """``dC/dx = dC/dy`` reshaped to ``x``'s shape.

        Args:
            theta: ``None``.
            x: the cache.
            g: ``dC/dy: (N, prod(shape))``.

        Returns:
            ``(dC/dx: (N, *shape), None)``.
        """
        return g.reshape(x.shape), None

    def forward_r(self, theta, v, x, r_x):
        """``R{y} = R{x}`` flattened.

        Args:
            theta: ``None``.
            v: ``None``.
            x: the cache.
            r_x: ``R{x}: (N, *shape)``, or ``None`` for an input that does not move.

        Returns:
            ``(R{y}, None)`` (``(None, None)`` when ``r_x`` is ``None``).
        """
        return (None if r_x is None else r_x.reshape(r_x.shape[0], -1)), None

    def backward_r(self, theta, v, x, r_cache, g, r_g):
        """``R{dC/dx} = R{dC/dy}`` reshaped.

        Args:
            theta: ``None``.
            v: ``None``.
            x: the cache.
            r_cache: not used.
            g: not used.
            r_g: ``R{dC/dy}: (N, prod(shape))``.

        Returns:
            ``(R{dC/dx}: (N, *shape), None)``.
        """
        return r_g.reshape(x.shape), None

    def backward2(self, theta, x, H, g=None, exact=True):
        """``A = H``: flattening keeps the row-major order in which ``H`` already indexes the features.

        Args:
            theta: ``None``.
            x: the cache (not used).
            H: ``d2C/dy_n^2: (N, n, n)``.
            g: not used.
            exact: not used.

        Returns:
            ``A = d2C/dx_n^2 = H: (N, n, n)``.
        """
        return H
