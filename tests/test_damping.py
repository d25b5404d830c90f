"""The damping parts: each rule against its closed form, and a rule of one's own plugged into
``fb.levenberg_marquardt`` without editing the package."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb
from fbackprop.optim.damping import check_rule


@pytest.mark.parametrize("rho", [-np.inf, -0.5, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("accepted", [True, False])
def test_every_rule_matches_its_closed_form(rho, accepted):
    mu, nu = 0.3, 4.0
    m = fb.optim.Marquardt(0.2, 5.0).update(mu, nu, rho, accepted)
    assert float(m[0]) == pytest.approx(mu * (0.2 if accepted else 5.0)) and float(m[1]) == nu
    n = fb.optim.Nielsen().update(mu, nu, rho, accepted)
    want = mu * max(1 / 3, 1 - (2 * rho - 1) ** 3) if accepted else mu * nu
    assert float(n[0]) == pytest.approx(want) and float(n[1]) == (2.0 if accepted else 2 * nu)
    t = fb.optim.TrustRegion(0.2, 5.0, 0.3).update(mu, nu, rho, accepted)
    grow, shrink = (not accepted) or rho < 0.25, accepted and rho > 0.75
    assert float(t[0]) == pytest.approx(mu * 5.0 if grow else mu * 0.2 if shrink else mu)
    assert bool(fb.optim.TrustRegion(rho_accept=0.3).accept(True, rho)) == (rho > 0.3)
    assert bool(fb.optim.Marquardt().accept(accepted, rho)) == accepted


def _sine():
    net = fb.mlp([1, 6, 1], activation="tanh")
    x, y = fb.data.sine(40, dtype=np.float64)
    return net, net.init(jax.random.key(0), jnp.float64), x, y


@pytest.mark.parametrize(
    "name, part",
    [
        ("marquardt", fb.optim.Marquardt()),
        ("nielsen", fb.optim.Nielsen()),
        ("trust_region", fb.optim.TrustRegion()),
    ],
)
def test_a_rule_given_as_a_part_runs_exactly_as_its_name(name, part):
    net, p, x, y = _sine()
    a = fb.levenberg_marquardt(net, p, x, y, damping=name, max_steps=25)
    b = fb.levenberg_marquardt(net, p, x, y, damping=part, max_steps=25)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    np.testing.assert_array_equal(a.history.mu, b.history.mu)


class MarquardtByHand(NamedTuple):
    """Marquardt's rule written as a user would: it must reproduce damping="marquardt" exactly."""

    mu_dec: float = 0.5
    mu_inc: float = 3.0

    def accept(self, decreased, rho):
        return decreased

    def update(self, mu, nu, rho, accepted):
        return jnp.where(accepted, mu * self.mu_dec, mu * self.mu_inc), nu


class Cautious(NamedTuple):
    """A rule of one's own that is in none of the package's: halve, quadruple, demand rho >= 0.1."""

    rho_min: float = 0.1

    def accept(self, decreased, rho):
        return decreased & (rho >= self.rho_min)

    def update(self, mu, nu, rho, accepted):
        return jnp.where(accepted, mu / 2, mu * 4), nu


def test_a_users_rule_plugs_in_and_equals_the_built_in_rule_it_restates():
    net, p, x, y = _sine()
    own = fb.levenberg_marquardt(net, p, x, y, damping=MarquardtByHand(), max_steps=25)
    ref = fb.levenberg_marquardt(net, p, x, y, mu_dec=0.5, mu_inc=3.0, max_steps=25)
    np.testing.assert_array_equal(own.history.loss, ref.history.loss)
    assert float(own.mu) == float(ref.mu)


def test_a_users_new_rule_fits_and_obeys_its_own_acceptance_test():
    net, p, x, y = _sine()
    r = fb.levenberg_marquardt(net, p, x, y, damping=Cautious(), max_steps=80)
    h = r.history
    k = int(r.iterations)
    loss, mu, acc = np.asarray(h.loss[: k + 1]), np.asarray(h.mu[: k + 1]), np.asarray(h.accepted[: k + 1])
    assert loss[-1] < 0.05 * loss[0] and np.all(np.diff(loss) <= 0)
    ratios = mu[2:] / mu[1:-1]  # each trial's mu is the previous one's halved or quadrupled
    np.testing.assert_allclose(ratios, np.where(acc[1:-1] == 1, 0.5, 4.0), rtol=1e-12)


def test_check_rule_refuses_a_rule_that_returns_the_wrong_thing():
    class NoPair(NamedTuple):
        def accept(self, decreased, rho):
            return decreased

        def update(self, mu, nu, rho, accepted):
            return mu

    class NotBool(NamedTuple):
        def accept(self, decreased, rho):
            return rho

        def update(self, mu, nu, rho, accepted):
            return mu, nu

    with pytest.raises(TypeError, match=r"NoPair\.update\(mu, nu, rho, accepted\) must return a pair"):
        check_rule(NoPair())
    with pytest.raises(TypeError, match=r"NotBool\.accept\(decreased, rho\) must return a bool scalar"):
        check_rule(NotBool())
