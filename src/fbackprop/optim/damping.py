"""How Levenberg-Marquardt's damping ``mu`` answers each trial step.

The step solves ``(G + mu D) delta = -g``; ``rho`` is the gain ratio, the actual decrease of the
cost over the decrease the quadratic model predicted (``-g.delta - delta.G delta / 2``).
Each rule is a pure ``update(mu, nu, rho, accepted) -> (mu, nu)``.

- ``marquardt`` (Marquardt 1963; MATLAB ``trainlm``): accept any decrease; ``mu *= mu_dec`` on
  success, ``mu *= mu_inc`` on failure (defaults 0.1 and 10).
- ``nielsen`` (Nielsen 1999; Madsen, Nielsen & Tingleff 2004): on success
  ``mu *= max(1/3, 1 - (2 rho - 1)^3)`` and ``nu = 2``; on failure ``mu *= nu``, ``nu *= 2``.
- ``trust_region`` (the gain-ratio thresholds of trust-region methods, as in MINPACK; Moré 1978):
  accept only when ``rho > rho_accept``; ``mu *= mu_inc`` when ``rho < 0.25``,
  ``mu *= mu_dec`` when ``rho > 0.75``, unchanged between.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

DAMPINGS = ("marquardt", "nielsen", "trust_region")


class Damping(NamedTuple):
    """A damping rule and its constants (checked by the optimizers: ``0 < mu_dec < 1 < mu_inc``).

    Attributes:
        rule: ``"marquardt"`` (default), ``"nielsen"`` or ``"trust_region"`` (module docstring).
        mu_dec: the factor on ``mu`` after a success (default 0.1; ``marquardt``, ``trust_region``).
        mu_inc: the factor on ``mu`` after a failure (default 10; ``marquardt``, ``trust_region``).
        rho_accept: the least gain ratio a ``trust_region`` step needs to be taken (default 1e-4).
    """

    rule: str = "marquardt"
    mu_dec: float = 0.1
    mu_inc: float = 10.0
    rho_accept: float = 1e-4

    def accept(self, decreased, rho):
        """Whether a trial step is taken: any decrease, or (trust region) a large enough gain ratio.

        Args:
            decreased: bool scalar, the trial's cost is finite and below the current one.
            rho: the gain ratio (actual over predicted decrease).

        Returns:
            A bool scalar.
        """
        return decreased & (rho > self.rho_accept) if self.rule == "trust_region" else decreased

    def update(self, mu, nu, rho, accepted):
        """The next ``(mu, nu)`` after a trial (``nu``: Nielsen's growth factor, 2 after a success).

        Args:
            mu: the damping the trial used.
            nu: Nielsen's factor (carried, unused by the other rules).
            rho: the gain ratio (``-inf`` for a non-finite trial).
            accepted: whether the step was taken.

        Returns:
            ``(mu, nu)`` for the next trial.
        """
        if self.rule == "nielsen":
            shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            return jnp.where(accepted, mu * shrink, mu * nu), jnp.where(accepted, 2.0, 2.0 * nu)
        if self.rule == "trust_region":
            grow = ~accepted | (rho < 0.25)
            return jnp.where(grow, mu * self.mu_inc, jnp.where(rho > 0.75, mu * self.mu_dec, mu)), nu
        return jnp.where(accepted, mu * self.mu_dec, mu * self.mu_inc), nu
