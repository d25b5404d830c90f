"""Layer normalization (Ba, Kiros & Hinton 2016): per example over the last axis, ``d`` features.

For one position (a vector row; for an image ``(H, W, C)`` one pixel's ``C`` channels)::

    mu = mean(x),  sigma = sqrt(mean((x - mu)^2) + eps),  xhat = (x - mu) / sigma
    y = gamma * xhat + beta,                                gamma, beta: (d,)

Its part of backpropagation in matrix form, with ``g = dC/dy`` arriving from above and
``u = gamma * g``: the Jacobian of the normalisation is the textbook

    dxhat/dx = (1/sigma) (I - 1 1^T / d - xhat xhat^T / d)          (symmetric)

so ``dC/dx = (1/sigma) (u - mean(u) - xhat mean(u xhat))``, ``dC/dgamma = sum g * xhat`` and
``dC/dbeta = sum g`` (summed over the batch and the positions).

Its R-operator (Pearlmutter 1994), with ``r = R{x}``: ``R{sigma} = mean(xhat r)``,
``R{xhat} = (1/sigma) (r - mean(r) - xhat R{sigma})`` and ``R{y} = gamma R{xhat} + v_gamma xhat +
v_beta``; ``backward_r`` is the tangent of ``dC/dx`` above.

Its second-order backward (Bishop 1992) is ``A = J^T H J + blockdiag_p S_p`` with ``J = diag(gamma)
dxhat/dx`` per position and, per position (``P = I - 1 1^T / d``, ``t = xhat . u``),

    S = sum_k u_k d2xhat_k/dx^2
      = -(1 / (d sigma^2)) [ (P u) xhat^T + xhat (P u)^T + t P - 3 t xhat xhat^T / d ]

which ``exact=False`` drops (the generalized Gauss-Newton recursion, Schraudolph 2002). ``y`` is
linear in ``gamma, beta``, so the block of the Hessian of the layer's own parameters is exactly
``sum_n J_theta,n^T H_n J_theta,n`` with ``dy/dbeta = I``, ``dy/dgamma = diag(xhat)`` per position.

Memory: the cache is ``xhat`` (like ``x``) and ``sigma`` (one number per position): ``O(N n)``.
The second-order backward and the curvature readouts take the dense per-example ``H: (N, n, n)``
and form ``(N, n, n)`` or ``(P_l, P_l)`` results, ``P_l = 2 d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from ..options import as_float
from .base import congruence, input_jt


def _mean(a):
    """The mean over the last axis, kept: ``(N, ..., d) -> (N, ..., 1)``."""
    return jnp.mean(a, axis=-1, keepdims=True)


def _batch_sum(a):
    """The sum over every axis but the last: ``(N, ..., d) -> (d,)``."""
    return jnp.sum(a.reshape(-1, a.shape[-1]), axis=0)


def _per_example_sum(a):
    """The sum over the positions of each example: ``(N, ..., d) -> (N, d)``."""
    return jnp.sum(a.reshape(a.shape[0], -1, a.shape[-1]), axis=1)


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalization over the last axis of each example, with a learned scale and shift.

    Attributes:
        eps: added to the variance before the square root (default ``1e-5``; must be > 0).

    Examples:
        >>> layer = fb.layers.LayerNorm()
        >>> theta, out_shape = layer.init(jax.random.key(0), (2, 3), jnp.float64)
        >>> sorted(theta), theta["gamma"].shape, out_shape
        (['beta', 'gamma'], (3,), (2, 3))
        >>> y, cache = layer.forward(theta, jnp.arange(6.0).reshape(1, 2, 3))
        >>> bool(jnp.allclose(y.mean(axis=-1), 0.0))
        True
    """

    eps: float = 1e-5

    has_params = True

    def __post_init__(self):
        object.__setattr__(self, "eps", as_float(self.eps, "LayerNorm eps", minimum=0.0, open_min=True))

    def init(self, key, in_shape, dtype):
        """``{"gamma": ones(d), "beta": zeros(d)}`` (the identity after normalising), and the output shape.

        Args:
            key: not used (the initial scale and shift are fixed).
            in_shape: one example's shape, ``(..., d)``: at least one axis, normalised over the last.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, in_shape)``.
        """
        in_shape = tuple(in_shape)
        if len(in_shape) < 1:
            raise ValueError(
                "LayerNorm normalises over the last axis of each example: input shape (..., d); got ()"
            )
        d = in_shape[-1]
        if d < 2:
            raise ValueError(
                f"LayerNorm needs at least 2 features on the last axis (one feature normalises to 0); "
                f"got input shape {in_shape}"
            )
        return {"gamma": jnp.ones((d,), dtype), "beta": jnp.zeros((d,), dtype)}, in_shape

    def forward(self, theta, x):
        """``y = gamma * (x - mu) / sigma + beta`` per position.

        Args:
            theta: ``{"gamma": (d,), "beta": (d,)}``.
            x: ``(N, ..., d)``.

        Returns:
            ``(y, (xhat, sigma))``: ``y`` and ``xhat`` shaped like ``x``, ``sigma: (N, ..., 1)``.
        """
        mu = _mean(x)
        sigma = jnp.sqrt(_mean((x - mu) ** 2) + self.eps)
        xhat = (x - mu) / sigma
        return theta["gamma"] * xhat + theta["beta"], (xhat, sigma)

    def reference(self, theta, x):
        """The same map written directly with ``jnp.var`` (what ``fb.check_layer`` compares ``forward`` with).

        Args:
            theta: ``{"gamma", "beta"}``.
            x: ``(N, ..., d)``.

        Returns:
            ``y``, shaped like ``x``.
        """
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.var(x, axis=-1, keepdims=True)
        return theta["gamma"] * (x - mean) / jnp.sqrt(var + self.eps) + theta["beta"]

    @staticmethod
    def _jt(xhat, sigma, u):
        """``(dxhat/dx)^T u = (1/sigma) (u - mean(u) - xhat mean(xhat u))`` per position (the Jacobian
        is symmetric)."""
        return (u - _mean(u) - xhat * _mean(xhat * u)) / sigma

    def backward(self, theta, cache, g):
        """``dC/dx = (1/sigma)(I - 1 1^T/d - xhat xhat^T/d) (gamma * g)``, ``dgamma = sum g xhat``,
        ``dbeta = sum g``.

        Args:
            theta: ``{"gamma", "beta"}``.
            cache: ``(xhat, sigma)`` from ``forward``.
            g: ``dC/dy``, shaped like ``xhat``.

        Returns:
            ``(dC/dx, {"beta": (d,), "gamma": (d,)})``, summed over the batch and the positions.
        """
        xhat, sigma = cache
        g_in = self._jt(xhat, sigma, theta["gamma"] * g)
        return g_in, {"beta": _batch_sum(g), "gamma": _batch_sum(g * xhat)}

    def forward_r(self, theta, v, cache, r_x):
        """``R{y} = gamma R{xhat} + v_gamma xhat + v_beta``, with
        ``R{xhat} = (1/sigma)(r - mean(r) - xhat R{sigma})`` and ``R{sigma} = mean(xhat r)``.

        Args:
            theta: ``{"gamma", "beta"}``.
            v: the direction's ``{"gamma", "beta"}``.
            cache: ``(xhat, sigma)``.
            r_x: ``R{x}``, shaped like ``xhat``, or ``None`` for an input that does not move.

        Returns:
            ``(R{y}, r_cache)``, ``r_cache = (R{xhat}, R{sigma})`` or ``None`` when ``r_x`` is ``None``.
        """
        xhat, sigma = cache
        r_y = v["gamma"] * xhat + v["beta"]
        if r_x is None:
            return r_y, None
        r_sigma = _mean(xhat * r_x)
        r_xhat = (r_x - _mean(r_x) - xhat * r_sigma) / sigma
        return r_y + theta["gamma"] * r_xhat, (r_xhat, r_sigma)

    def backward_r(self, theta, v, cache, r_cache, g, r_g):
        """The R-operator of ``backward``: with ``u = gamma g``, ``R{u} = gamma R{g} + v_gamma g`` and
        ``R{dC/dx} = -(R{sigma}/sigma) dC/dx + (1/sigma)(R{u} - mean(R{u}) - R{xhat} mean(xhat u)
        - xhat mean(R{xhat} u + xhat R{u}))``.

        Args:
            theta: ``{"gamma", "beta"}``.
            v: the direction's ``{"gamma", "beta"}``.
            cache: ``(xhat, sigma)``.
            r_cache: ``(R{xhat}, R{sigma})``, or ``None`` for an input that does not move.
            g: ``dC/dy``.
            r_g: ``R{dC/dy}``.

        Returns:
            ``(R{dC/dx}, {"beta": R{dbeta}, "gamma": R{dgamma}})``.
        """
        xhat, sigma = cache
        u = theta["gamma"] * g
        r_u = theta["gamma"] * r_g + v["gamma"] * g
        r_g_in = self._jt(xhat, sigma, r_u)
        r_dgamma = r_g * xhat
        if r_cache is not None:
            r_xhat, r_sigma = r_cache
            g_in = self._jt(xhat, sigma, u)
            r_g_in = (
                r_g_in
                - (r_sigma / sigma) * g_in
                - (r_xhat * _mean(xhat * u) + xhat * _mean(r_xhat * u)) / sigma
            )
            r_dgamma = r_dgamma + g * r_xhat
        return r_g_in, {"beta": _batch_sum(r_g), "gamma": _batch_sum(r_dgamma)}

    def _curvature_term(self, theta, cache, g):
        """``S_p = sum_k u_k d2xhat_k/dx^2`` per position: ``(N, positions, d, d)``, with ``u = gamma g``."""
        xhat, sigma = cache
        n, d = xhat.shape[0], xhat.shape[-1]
        xh = xhat.reshape(n, -1, d)
        u = (theta["gamma"] * g).reshape(n, -1, d)
        s2 = (sigma * sigma).reshape(n, -1, 1, 1)
        Pu = u - jnp.mean(u, axis=-1, keepdims=True)  # P u, P = I - 1 1^T / d
        t = jnp.sum(xh * u, axis=-1)[:, :, None, None]  # xhat . u
        P = jnp.eye(d, dtype=xhat.dtype) - 1.0 / d
        outer = Pu[..., :, None] * xh[..., None, :]
        xx = xh[..., :, None] * xh[..., None, :]
        return -(outer + jnp.swapaxes(outer, -1, -2) + t * P - 3.0 * t * xx / d) / (d * s2)

    def backward2(self, theta, cache, H, g, exact=True):
        """``A = J^T H J + blockdiag_p S_p`` (module docstring); ``J^T H J`` by ``backward`` applied to the
        columns of ``H`` (``fb.layers.base.congruence``).

        Args:
            theta: ``{"gamma", "beta"}``.
            cache: ``(xhat, sigma)``, ``xhat: (N, ..., d)``.
            H: ``d2C/dy_n^2: (N, n, n)``, ``n = prod(xhat.shape[1:])``, row-major over the example's shape.
            g: ``dC/dy``, shaped like ``xhat``.
            exact: keep the second-derivative term (default True); False: the GGN recursion.

        Returns:
            ``A = d2C/dx_n^2: (N, n, n)``. Memory ``O(N n^2)``.
        """
        xhat = cache[0]
        A = congruence(input_jt(self, theta, cache), H, xhat.shape[1:])
        if not exact:
            return A
        S = self._curvature_term(theta, cache, g)  # (N, p, d, d)
        n, p, d, _ = S.shape
        eye = jnp.eye(p, dtype=S.dtype)
        blocks = S[:, :, :, None, :] * eye[None, :, None, :, None]  # (N, p, d, p, d), block-diagonal
        return A + blocks.reshape(n, p * d, p * d)

    def per_example_grads(self, theta, cache, g):
        """``dgamma_n = sum_p g_np xhat_np``, ``dbeta_n = sum_p g_np`` (sums over the positions ``p``).

        Args:
            theta: not used.
            cache: ``(xhat, sigma)``.
            g: ``(N, ..., d)``, each example's ``dl_n/dy_n``.

        Returns:
            ``{"beta": (N, d), "gamma": (N, d)}``.
        """
        xhat = cache[0]
        return {"beta": _per_example_sum(g), "gamma": _per_example_sum(g * xhat)}

    @staticmethod
    def _H5(cache, H):
        """``H: (N, n, n) -> (N, p, d, p, d)`` and ``xhat: (N, p, d)`` over positions ``p``."""
        xhat = cache[0]
        n, d = xhat.shape[0], xhat.shape[-1]
        xh = xhat.reshape(n, -1, d)
        return H.reshape(n, xh.shape[1], d, xh.shape[1], d), xh

    def per_example_hessian_diag(self, theta, cache, H, g=None, exact=True):
        """``d2l_n/dgamma_j^2 = sum_pq xhat_npj H_n[pj, qj] xhat_nqj`` and
        ``d2l_n/dbeta_j^2 = sum_pq H_n[pj, qj]`` (positions ``p, q``).

        Args:
            theta: not used.
            cache: ``(xhat, sigma)``.
            H: ``(N, n, n)``.
            g: not used (``y`` is linear in ``gamma, beta``).
            exact: not used.

        Returns:
            ``{"beta": (N, d), "gamma": (N, d)}``. Memory ``O(N n)`` beyond ``H``.
        """
        H5, xh = self._H5(cache, H)
        Hd = jnp.diagonal(H5, axis1=2, axis2=4)  # (N, p, p, d): H_n[pj, qj]
        return {
            "beta": jnp.sum(Hd, axis=(1, 2)),
            "gamma": jnp.einsum("npj,npqj,nqj->nj", xh, Hd, xh),
        }

    def hessian_diag(self, theta, cache, H, g=None, exact=True):
        """The sum over the batch of ``per_example_hessian_diag``.

        Args:
            theta: not used.
            cache: ``(xhat, sigma)``.
            H: ``(N, n, n)`` (carrying the cost's ``1/N``).
            g: not used.
            exact: not used.

        Returns:
            ``{"beta": (d,), "gamma": (d,)}``.
        """
        per = self.per_example_hessian_diag(theta, cache, H, g, exact)
        return {k: jnp.sum(a, axis=0) for k, a in per.items()}

    def hessian_block(self, theta, cache, H, g=None, exact=True):
        """``sum_n J_theta,n^T H_n J_theta,n``: ``(2d, 2d)``, ordered ``beta`` then ``gamma``
        (``ravel_pytree``'s sorted keys), ``[[bb, bg], [bg^T, gg]]``.

        Args:
            theta: not used.
            cache: ``(xhat, sigma)``.
            H: ``(N, n, n)``.
            g: not used (``y`` is linear in ``gamma, beta``).
            exact: not used.

        Returns:
            The ``(2 d, 2 d)`` block.
        """
        H5, xh = self._H5(cache, H)
        bb = jnp.einsum("npjql->jl", H5)
        bg = jnp.einsum("npjql,nql->jl", H5, xh)
        gg = jnp.einsum("npj,npjql,nql->jl", xh, H5, xh)
        return jnp.block([[bb, bg], [bg.T, gg]])

    def jacobian_gram(self, theta, cache, G):
        """``sum_p J_nk,p J_mj,p`` over ``gamma, beta`` from each row's ``(dbeta, dgamma)``: the rows are
        ``sum_positions G_kn`` and ``sum_positions G_kn xhat_n``, ``2 d`` numbers each.

        Args:
            theta: not used.
            cache: ``(xhat, sigma)``.
            G: ``(K, N, ..., d)``, the output gradients of ``K`` unit-seeded backward passes.

        Returns:
            ``(N, K, N, K)``.
        """
        xhat = cache[0]
        k, n, d = G.shape[0], G.shape[1], G.shape[-1]
        Gp = G.reshape(k, n, -1, d)
        rb = jnp.sum(Gp, axis=2)  # (K, N, d)
        rg = jnp.einsum("knpd,npd->knd", Gp, xhat.reshape(n, -1, d))
        return jnp.einsum("knd,jmd->nkmj", rb, rb) + jnp.einsum("knd,jmd->nkmj", rg, rg)
