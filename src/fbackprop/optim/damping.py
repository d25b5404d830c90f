"""Damping parts: how Levenberg-Marquardt's ``mu`` answers each trial step.

The step solves ``(G + mu D) delta = -g``; ``rho`` is the gain ratio, the actual decrease of the
cost over the decrease the quadratic model predicted (``-g.delta - delta.G delta / 2``).

A damping rule is any object with two pure methods (the loop calls them inside ``jit``):

- ``accept(decreased, rho) -> bool``: whether the trial step is taken (``decreased``: the trial's
  cost is finite and below the current one);
- ``update(mu, nu, rho, accepted) -> (mu, nu)``: the damping for the next trial. ``nu`` is a second
  scalar the loop carries for the rule's own memory (Nielsen's growth factor); it starts at 2.

The three rules of the package are frozen dataclasses whose fields are their constants:

- ``Marquardt`` (Marquardt 1963; MATLAB ``trainlm``): accept any decrease; ``mu *= mu_dec`` on
  success, ``mu *= mu_inc`` on failure (defaults 0.1 and 10).
- ``Nielsen`` (Nielsen 1999; Madsen, Nielsen & Tingleff 2004): on success
  ``mu *= max(1/3, 1 - (2 rho - 1)^3)`` and ``nu = 2``; on failure ``mu *= nu``, ``nu *= 2``.
- ``TrustRegion`` (the gain-ratio thresholds of trust-region methods, as in MINPACK; Moré 1978):
  accept only when ``rho > rho_accept``; ``mu *= mu_inc`` when ``rho < 0.25``,
  ``mu *= mu_dec`` when ``rho > 0.75``, unchanged between. Hessian-free's damping of ``lam``
  (Martens 2010) is this rule with ``mu_dec = 2/3`` and ``mu_inc = 3/2``.

A rule of one's own is a few lines and is passed as ``fb.levenberg_marquardt(..., damping=rule)``
(the guide's "Optimizers from parts" shows one); ``check_rule`` traces it once at the call, so a rule
that returns the wrong thing is refused before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


class AnyDecrease:
    """The acceptance of Marquardt's and Nielsen's rules: any decrease of the cost is taken."""

    def accept(self, decreased, rho):
        """Any decrease is taken.

        Args:
            decreased: bool scalar, the trial's cost is finite and below the current one.
            rho: the gain ratio (unused).

        Returns:
            ``decreased``.
        """
        return decreased


@dataclasses.dataclass(frozen=True)
class Marquardt(AnyDecrease):
    """Marquardt's (1963) rule: any decrease is taken; ``mu`` shrinks by ``mu_dec`` or grows by ``mu_inc``.

    Attributes:
        mu_dec: the factor on ``mu`` after an accepted step, in (0, 1) (default 0.1).
        mu_inc: the factor on ``mu`` after a rejected step, > 1 (default 10).

    Examples:
        >>> rule = fb.optim.Marquardt(mu_dec=0.5)
        >>> float(rule.update(1.0, 2.0, 0.9, True)[0]), float(rule.update(1.0, 2.0, -1.0, False)[0])
        (0.5, 10.0)
    """

    mu_dec: float = 0.1
    mu_inc: float = 10.0

    def update(self, mu, nu, rho, accepted):
        """``mu * mu_dec`` after a success, ``mu * mu_inc`` after a failure; ``nu`` unchanged.

        Args:
            mu: the damping the trial used.
            nu: the rule's memory (unused, passed through).
            rho: the gain ratio (unused).
            accepted: whether the step was taken.

        Returns:
            ``(mu, nu)`` for the next trial.
        """
        return jnp.where(accepted, mu * self.mu_dec, mu * self.mu_inc), jnp.asarray(nu)


@dataclasses.dataclass(frozen=True)
class Nielsen(AnyDecrease):
    """Nielsen's (1999) rule: ``mu`` follows the gain ratio smoothly; failures grow it geometrically.

    Examples:
        >>> mu, nu = fb.optim.Nielsen().update(1.0, 2.0, 1.0, False)
        >>> float(mu), float(nu)
        (2.0, 4.0)
    """

    def update(self, mu, nu, rho, accepted):
        """On success ``mu *= max(1/3, 1 - (2 rho - 1)^3)``, ``nu = 2``; on failure ``mu *= nu``, ``nu *= 2``.

        Args:
            mu: the damping the trial used.
            nu: the growth factor after a run of failures (2 after a success).
            rho: the gain ratio (``-inf`` for a non-finite trial).
            accepted: whether the step was taken.

        Returns:
            ``(mu, nu)`` for the next trial.
        """
        shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        return jnp.where(accepted, mu * shrink, mu * nu), jnp.where(accepted, 2.0, 2.0 * nu)


@dataclasses.dataclass(frozen=True)
class TrustRegion:
    """The trust-region thresholds (Moré 1978): a step must earn ``rho > rho_accept``; ``mu`` follows ``rho``.

    Attributes:
        mu_dec: the factor on ``mu`` when ``rho > 0.75``, in (0, 1) (default 0.1).
        mu_inc: the factor on ``mu`` when ``rho < 0.25`` or the step is rejected, > 1 (default 10).
        rho_accept: the least gain ratio a step needs to be taken, >= 0 (default 1e-4).

    Examples:
        >>> rule = fb.optim.TrustRegion(rho_accept=0.1)
        >>> bool(rule.accept(True, 0.05)), float(rule.update(1.0, 2.0, 0.5, True)[0])
        (False, 1.0)
    """

    mu_dec: float = 0.1
    mu_inc: float = 10.0
    rho_accept: float = 1e-4

    def accept(self, decreased, rho):
        """A decrease whose gain ratio exceeds ``rho_accept``.

        Args:
            decreased: bool scalar, the trial's cost is finite and below the current one.
            rho: the gain ratio.

        Returns:
            A bool scalar.
        """
        return decreased & (rho > self.rho_accept)

    def update(self, mu, nu, rho, accepted):
        """``mu * mu_inc`` on a rejection or ``rho < 0.25``, ``mu * mu_dec`` when ``rho > 0.75``.

        Args:
            mu: the damping the trial used.
            nu: the rule's memory (unused, passed through).
            rho: the gain ratio (``-inf`` for a non-finite trial).
            accepted: whether the step was taken.

        Returns:
            ``(mu, nu)`` for the next trial.
        """
        grow = ~jnp.asarray(accepted) | (rho < 0.25)
        return jnp.where(grow, mu * self.mu_inc, jnp.where(rho > 0.75, mu * self.mu_dec, mu)), jnp.asarray(nu)


#: The rules by the names ``damping=`` takes.
DAMPINGS = {"marquardt": Marquardt, "nielsen": Nielsen, "trust_region": TrustRegion}


def is_rule(damping: Any) -> bool:
    """Whether ``damping`` has the two methods of a damping rule.

    Args:
        damping: anything.

    Returns:
        True when it has callable ``accept`` and ``update``.
    """
    return callable(getattr(damping, "accept", None)) and callable(getattr(damping, "update", None))


def check_rule(rule: Any, dtype=jnp.float64) -> None:
    """Trace a damping rule once on scalars and refuse one that returns the wrong thing.

    Args:
        rule: an object with ``accept`` and ``update`` (module docstring).
        dtype: the computation's floating dtype.

    Returns:
        None.

    Raises:
        TypeError: naming the method, what it must return and what it returned.
    """
    try:
        hash(rule)
    except TypeError as err:
        raise TypeError(
            f"a damping rule must be hashable (it keys the compiled program), e.g. a frozen dataclass of its "
            f"constants; got {type(rule).__name__}: {err}"
        ) from None
    s = jax.ShapeDtypeStruct((), dtype)
    b = jax.ShapeDtypeStruct((), jnp.bool_)
    ok = jax.eval_shape(rule.accept, b, s)
    if not (isinstance(ok, jax.ShapeDtypeStruct) and ok.shape == () and ok.dtype == jnp.bool_):
        raise TypeError(
            f"damping rule {type(rule).__name__}.accept(decreased, rho) must return a bool scalar; "
            f"it returned {ok}"
        )
    out = jax.eval_shape(rule.update, s, s, s, b)
    if not (
        isinstance(out, tuple)
        and len(out) == 2
        and all(isinstance(o, jax.ShapeDtypeStruct) and o.shape == () for o in out)
        and all(jnp.issubdtype(o.dtype, jnp.floating) for o in out)
    ):
        raise TypeError(
            f"damping rule {type(rule).__name__}.update(mu, nu, rho, accepted) must return a pair of real "
            f"scalars (mu, nu); it returned {out}"
        )
