"""How Levenberg-Marquardt's damping ``mu`` answers each trial step.

The step solves ``(G + mu D) delta = -g``; ``rho`` is the gain ratio, the actual decrease of the
cost over the decrease the quadratic model predicted (``-g.delta - delta.G delta / 2``).
Each rule is a pure ``update(mu, nu, rho, accepted) -> (mu, nu)``.

- ``marquardt`` (Marquardt 1963; MATLAB ``trainlm``): accept any decrease; ``mu *= mu_dec`` on
  success, ``mu *= mu_inc`` on failure (defaults 0.1 and 10).
- ``nielsen`` (Nielsen 1999; Madsen, Nielsen & Tingleff 2004): on success
  ``mu *= max(1/3, 1 - (2 rho - 1)^3)`` and ``nu = 2``; on failure ``mu *= nu``, ``nu *= 2``.
- ``trust_region``: accept only when ``rho > rho_accept``; ``mu *= mu_inc`` when ``rho < 0.25``,
  ``mu *= mu_dec`` when ``rho > 0.75``, unchanged between.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

DAMPINGS = ("marquardt", "nielsen", "trust_region")


class Damping(NamedTuple):
    rule: str = "marquardt"
    mu_dec: float = 0.1
    mu_inc: float = 10.0
    rho_accept: float = 1e-4

    def accept(self, decreased, rho):
        """Whether a trial step is taken: any decrease, or (trust region) a large enough gain ratio."""
        return decreased & (rho > self.rho_accept) if self.rule == "trust_region" else decreased

    def update(self, mu, nu, rho, accepted):
        if self.rule == "nielsen":
            shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            return jnp.where(accepted, mu * shrink, mu * nu), jnp.where(accepted, 2.0, 2.0 * nu)
        if self.rule == "trust_region":
            grow = ~accepted | (rho < 0.25)
            return jnp.where(grow, mu * self.mu_inc, jnp.where(rho > 0.75, mu * self.mu_dec, mu)), nu
        return jnp.where(accepted, mu * self.mu_dec, mu * self.mu_inc), nu
