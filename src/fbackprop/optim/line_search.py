"""The line-search part: backtracking with Armijo's (1966) sufficient-decrease test.

Along a direction ``delta`` from ``theta``, ``phi(alpha) = E(theta + alpha delta)``: starting at
``alpha = 1``, ``alpha *= factor`` until ``phi(alpha) <= phi(0) + armijo alpha slope`` (``slope =
g.delta < 0`` for a descent direction) or ``alpha`` falls to ``factor^max_steps``. Gauss-Newton uses
it with ``factor = 1/2`` (halving), Hessian-free (Martens 2010) with ``factor = 0.8`` and
``armijo = 1e-2``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Backtracking:
    """Backtracking from ``alpha = 1`` by ``factor`` until Armijo's condition holds.

    Attributes:
        factor: the step length's shrink factor, in (0, 1) (default 0.5).
        armijo: the sufficient-decrease constant c, in (0, 1) (default 1e-4).
        max_steps: the most shrinks, an integer >= 0 (default 30).

    Examples:
        >>> ls = fb.optim.Backtracking()
        >>> alpha, value, ok = ls.search(lambda a: (a - 0.25) ** 2, 0.0625, -0.5, 0.5625)
        >>> float(alpha), bool(ok)
        (0.25, True)
    """

    factor: float = 0.5
    armijo: float = 1e-4
    max_steps: int = 30

    def search(self, phi, phi0, slope, phi1, while_loop=jax.lax.while_loop):
        """The first ``alpha = factor^j`` that satisfies Armijo's condition (traceable).

        Args:
            phi: ``alpha -> E(theta + alpha delta)``.
            phi0: ``phi(0)``, the cost at ``theta``.
            slope: ``g.delta``, the directional derivative at ``alpha = 0``.
            phi1: ``phi(1)`` (the caller has it: no second evaluation).
            while_loop: ``lax.while_loop`` (default) or the host loop's (``loop.HOST.while_loop``).

        Returns:
            ``(alpha, phi(alpha), ok)``: ``ok`` is False when no ``alpha`` down to
            ``factor^max_steps`` satisfies the condition or the cost there is not finite.
        """
        holds = lambda alpha, value: value <= phi0 + self.armijo * alpha * slope
        floor = self.factor**self.max_steps

        def shrink(c):
            alpha, _ = c
            return alpha * self.factor, phi(alpha * self.factor)

        alpha, value = while_loop(
            lambda c: ~holds(*c) & (c[0] > floor), shrink, (jnp.asarray(1.0, jnp.result_type(phi0)), phi1)
        )
        return alpha, value, holds(alpha, value) & jnp.isfinite(value)
