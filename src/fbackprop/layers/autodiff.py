"""Any model ``apply(params, x)`` as one layer whose every pass is JAX autodiff of ``apply``.

A Flax module's ``apply``, an Equinox model's call, or any function of a params pytree and a batch
``x: (N, *in_shape) -> (N, n_out)`` becomes a layer of the protocol (``base.py``), so a network of
it, ``fb.serial(Autodiff.of(apply, params), input_shape=...)``, goes wherever an fbackprop network
goes: Levenberg-Marquardt with every solver, Gauss-Newton, damped Newton, Hessian-free, the
curvature quantities. Its passes are the autodiff twins of the hand-written ones:

- ``backward``: one ``vjp``; ``forward_r``: one ``jvp``; ``backward_r``: the ``jvp`` of the ``vjp``;
- ``per_example_grads``: a ``vjp`` per example (``vmap``), so the Jacobian rows are ``vjp``'s
  seeded with unit vectors;
- ``backward2`` and the Hessian readouts: per-example Jacobians (``jacrev``) sandwiching ``H``,
  plus, for ``exact=True``, the Hessian of ``g . apply`` (memory ``O(N P^2)`` for the block and the
  exact diagonal: for small models; the GGN diagonal needs only ``O(N n_out P)``).

``apply`` must treat examples independently (no batch statistics): the per-example readouts
evaluate it on one example at a time, ``x[n][None]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def _one(apply, theta, x_n):
    """``apply`` on one example, flattened: ``(n_out,)``."""
    return apply(theta, x_n[None])[0].reshape(-1)


@dataclass(frozen=True)
class Autodiff:
    """``apply(params, x)`` as a layer with parameters, every pass from autodiff (module docstring).

    Attributes:
        apply: ``(params, x: (N, *in_shape)) -> (N, n_out)``.
        treedef: the params' tree structure.
        leaves: each leaf's ``(shape, dtype)``, in the tree's order.

    Examples:
        >>> apply = lambda p, x: jnp.tanh(x @ p["w"]) * p["s"]
        >>> params = {"w": jnp.ones((2, 3)), "s": jnp.ones(3)}
        >>> net = fb.serial(fb.layers.Autodiff.of(apply, params), input_shape=(2,))
        >>> net.n_params, net.n_out
        (9, 3)
    """

    apply: Callable
    treedef: Any
    leaves: tuple

    has_params = True

    @classmethod
    def of(cls, apply: Callable, params: Any) -> Autodiff:
        """The layer of ``apply`` for params shaped like ``params``.

        Args:
            apply: ``(params, x) -> (N, n_out)``.
            params: a params pytree (only the structure, shapes and dtypes are kept).

        Returns:
            An ``Autodiff`` layer.
        """
        leaves, treedef = jax.tree.flatten(params)
        return cls(apply, treedef, tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves))

    def __repr__(self) -> str:
        name = getattr(self.apply, "__qualname__", type(self.apply).__name__)
        return f"Autodiff({name}, {len(self.leaves)} leaves)"

    def init(self, key, in_shape, dtype):
        """Zeros shaped like the params (the optimizers start from the params given), and the output shape.

        Args:
            key: unused (there is no initializer of an arbitrary model here).
            in_shape: one example's input shape.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, out_shape)``.
        """
        theta = jax.tree.unflatten(self.treedef, [jnp.zeros(s, dtype) for s, _ in self.leaves])
        y = jax.eval_shape(self.apply, theta, jax.ShapeDtypeStruct((1, *in_shape), dtype))
        return theta, tuple(y.shape[1:])

    def forward(self, theta, x):
        """``y = apply(theta, x)``; the cache is ``x``.

        Args:
            theta: the params.
            x: ``(N, *in_shape)``.

        Returns:
            ``(y: (N, n_out), x)``.
        """
        return self.apply(theta, x), x

    def backward(self, theta, x, g):
        """``(J_x^T g, J_theta^T g)`` by one ``vjp``.

        Args:
            theta: the params.
            x: the cache (the input).
            g: ``dC/dy: (N, n_out)``.

        Returns:
            ``(g_in: (N, *in_shape), dtheta)``, ``dtheta`` shaped like ``theta``.
        """
        dtheta, g_in = jax.vjp(self.apply, theta, x)[1](g)
        return g_in, dtheta

    def forward_r(self, theta, v, x, r_x):
        """``R{y}`` by one ``jvp`` in the direction ``(v, r_x)``.

        Args:
            theta: the params.
            v: the direction for them.
            x: the cache.
            r_x: ``R{x}``, or ``None`` when the input does not move.

        Returns:
            ``(r_y, r_x)``.
        """
        r_x = jnp.zeros_like(x) if r_x is None else r_x
        return jax.jvp(self.apply, (theta, x), (v, r_x))[1], r_x

    def backward_r(self, theta, v, x, r_x, g, r_g):
        """``R{backward}``: the ``jvp`` of the ``vjp`` in the direction ``(v, R{x}, R{g})``.

        Args:
            theta: the params.
            v: the direction for them.
            x: the cache.
            r_x: ``forward_r``'s cache (``R{x}``).
            g: ``dC/dy``.
            r_g: ``R{g}``.

        Returns:
            ``(R{g_in}, R{dtheta})``.
        """
        pull = lambda t, xx, gg: jax.vjp(self.apply, t, xx)[1](gg)
        r_dtheta, r_g_in = jax.jvp(pull, (theta, x, g), (v, r_x, r_g))[1]
        return r_g_in, r_dtheta

    def backward2(self, theta, x, H, g, exact):
        """``A_n = J_n^T H_n J_n (+ sum_k g_nk d2y_nk/dx_n^2)`` over the flattened input, per example.

        Args:
            theta: the params.
            x: the cache.
            H: ``(N, n_out, n_out)``.
            g: ``(N, n_out)``.
            exact: include the second-derivative term.

        Returns:
            ``A: (N, n_in, n_in)``.
        """
        shape = x.shape[1:]

        def per_example(x_n, H_n, g_n):
            f = lambda u: _one(self.apply, theta, u.reshape(shape))
            J = jax.jacrev(f)(x_n.reshape(-1))
            A = J.T @ H_n @ J
            return A + jax.hessian(lambda u: g_n @ f(u))(x_n.reshape(-1)) if exact else A

        return jax.vmap(per_example)(x, H, g.reshape(g.shape[0], -1))

    def per_example_grads(self, theta, x, g):
        """``dl_n/dtheta`` of each example: a ``vjp`` per example.

        Args:
            theta: the params.
            x: the cache.
            g: ``dl_n/dy_n: (N, n_out)``.

        Returns:
            A tree shaped like ``theta``, every leaf with a leading ``N`` axis.
        """
        return jax.vmap(lambda x_n, g_n: jax.vjp(lambda t: self.apply(t, x_n[None]), theta)[1](g_n[None])[0])(
            x, g
        )

    def _per_example_curvature(self, theta, x, H, g, exact, diagonal: bool):
        """``J_n^T H_n J_n (+ the Hessian of g_n . y_n)`` per example in ``ravel_pytree``'s order:
        ``(N, P, P)``, or only its diagonal ``(N, P)`` (the GGN's from ``J`` alone, no ``(P, P)`` block)."""
        flat, unflatten = ravel_pytree(theta)
        f = lambda t, x_n: _one(self.apply, unflatten(t), x_n)

        def per_example(x_n, H_n, g_n):
            J = jax.jacrev(f)(flat, x_n)
            B = jnp.einsum("ap,ab,bp->p", J, H_n, J) if diagonal else J.T @ H_n @ J
            if not exact:
                return B
            E = jax.hessian(lambda t: g_n @ f(t, x_n))(flat)
            return B + (jnp.diagonal(E) if diagonal else E)

        return jax.vmap(per_example)(x, H, g)

    def hessian_block(self, theta, x, H, g, exact):
        """The block of ``d2C/dtheta^2``: ``sum_n J_n^T H_n J_n (+ the exact term)``.

        Args:
            theta: the params.
            x: the cache.
            H: ``(N, n_out, n_out)``.
            g: ``(N, n_out)``.
            exact: include ``sum_n sum_k g_nk d2y_nk/dtheta^2``.

        Returns:
            ``(P, P)`` in ``ravel_pytree``'s order of ``theta``.
        """
        return jnp.sum(self._per_example_curvature(theta, x, H, g, exact, diagonal=False), axis=0)

    def per_example_hessian_diag(self, theta, x, H, g, exact):
        """The diagonal of each example's block, shaped like ``theta`` with a leading ``N``.

        Args:
            theta: the params.
            x: the cache.
            H: ``(N, n_out, n_out)``.
            g: ``(N, n_out)``.
            exact: include the second-derivative term.

        Returns:
            A tree shaped like ``theta``, leaves with a leading ``N`` axis.
        """
        unflatten = ravel_pytree(theta)[1]
        return jax.vmap(unflatten)(self._per_example_curvature(theta, x, H, g, exact, diagonal=True))

    def hessian_diag(self, theta, x, H, g, exact):
        """The diagonal of ``d2C/dtheta^2`` summed over the batch, shaped like ``theta``.

        Args:
            theta: the params.
            x: the cache.
            H: ``(N, n_out, n_out)``.
            g: ``(N, n_out)``.
            exact: include the second-derivative term.

        Returns:
            A tree shaped like ``theta``.
        """
        return jax.tree.map(
            lambda d: jnp.sum(d, axis=0), self.per_example_hessian_diag(theta, x, H, g, exact)
        )
