"""The Levenberg-Marquardt trial step (``optim/lm_loop.py``) with and without the line search along a
rejected trial's step: closed forms on a one-parameter-per-coordinate quadratic, then whole runs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb
from fbackprop.optim import loop
from fbackprop.optim import solvers as S
from fbackprop.optim.lm_loop import lm_run

P = 3


def _overshooting_run(search, control=loop.COMPILED, max_steps=1):
    """``E = sum (theta - 1)^2`` from 0 with a solve that overshoots: ``delta = 3 (1 - theta)``, so the
    full trial lands at 3 (``E = 4P > P``) and is rejected; half of it lands at 1.5 (``E = P/4``)."""
    cost = lambda t: jnp.sum((t - 1.0) ** 2)
    linearize = lambda t: S.Normal(2.0 * jnp.eye(P), 2.0 * (t - 1.0), jnp.ones(P))
    solve = lambda lin, mu: (-1.5 * lin.g, jnp.asarray(1.0))
    run = lm_run(cost, linearize, solve, fb.optim.Marquardt(0.1, 10.0), False, 1, max_steps, control=control,
                 search=search)  # fmt: skip
    f = lambda v: jnp.asarray(v, jnp.float64)
    return run(jnp.zeros(P), f(1e-3), f(1e10), f(0.0), f(0.0), jnp.int32(1))


def test_a_rejected_trial_moves_to_the_first_armijo_point_of_the_same_step_and_mu_still_grows():
    plain, searched = _overshooting_run(None), _overshooting_run(fb.optim.Backtracking())
    chex.assert_trees_all_close(plain.theta, jnp.zeros(P))  # the classic method stays put
    chex.assert_trees_all_close(searched.theta, jnp.full(P, 1.5))  # alpha = 1/2 meets Armijo
    np.testing.assert_allclose(float(searched.E), P / 4)
    chex.assert_trees_all_close(searched.lin.g, jnp.full(P, 1.0))  # re-linearized at the new point
    np.testing.assert_allclose([float(plain.mu), float(searched.mu)], [1e-2, 1e-2])  # both rejected: x10
    np.testing.assert_array_equal([plain.history.accepted[1], searched.history.accepted[1]], [0.0, 1.0])


def test_a_search_that_finds_nothing_leaves_the_params_unchanged():
    # factor 0.9 and no shrink beyond one: alpha = 0.9 lands at 2.7, no decrease
    stay = _overshooting_run(fb.optim.Backtracking(factor=0.9, max_steps=1))
    chex.assert_trees_all_close(stay.theta, jnp.zeros(P))
    np.testing.assert_allclose(float(stay.E), P)


def test_true_is_up_to_ten_halvings_with_armijo():
    from fbackprop.optim import _options as O

    assert O.line_search(True) == fb.optim.Backtracking(factor=0.5, armijo=1e-4, max_steps=10)
    assert O.line_search(None) is None and O.line_search(False) is None


def test_the_host_loop_takes_the_same_steps_as_the_compiled_one():
    search = fb.optim.Backtracking()
    compiled, host = _overshooting_run(search, max_steps=4), _overshooting_run(search, loop.HOST, max_steps=4)
    chex.assert_trees_all_close(host.theta, compiled.theta, rtol=1e-14)
    chex.assert_trees_all_close(host.history.loss, compiled.history.loss, rtol=1e-14)


class _Sine:
    net = fb.mlp([1, 5, 1], activation="tanh")
    params = net.init(jax.random.key(0), jnp.float64)
    x, y = fb.data.sine(40, dtype=np.float64)


def _sine():
    return _Sine


def test_with_the_search_a_run_is_the_classic_one_until_the_first_rejected_trial():
    pb = _sine()
    runs = [
        fb.levenberg_marquardt(pb.net, pb.params, pb.x, pb.y, max_steps=40, line_search=ls)
        for ls in (None, True)
    ]
    acc = np.asarray(runs[0].history.accepted)
    k = int(np.argmax(acc[1:] == 0)) + 1  # the first rejected trial of the classic run
    assert acc[k] == 0.0
    plain, searched = (np.asarray(r.history.loss) for r in runs)
    np.testing.assert_allclose(searched[:k], plain[:k], rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(runs[1].history.mu)[: k + 2], np.asarray(runs[0].history.mu)[: k + 2]
    )
    assert searched[k] <= plain[k]  # the search's point, or the same loss where it found none
    finite = searched[np.isfinite(searched)]
    assert np.all(np.diff(finite) <= 1e-15 * finite[:-1])  # the loss never rises


@pytest.mark.parametrize("damping", ["marquardt", "nielsen"])
def test_the_search_needs_fewer_trials_to_the_target_in_the_median_over_seeds(damping):
    data = fb.data.sine(200, dtype=np.float64)
    net = fb.mlp([1, 10, 1], activation="tanh")
    trials = {None: [], True: []}
    for seed in range(5):
        params = net.init(jax.random.key(seed), jnp.float64)
        for ls in trials:
            C = np.asarray(fb.levenberg_marquardt(net, params, *data, damping=damping, max_steps=400,
                                                  line_search=ls).history.loss)  # fmt: skip
            hit = np.nonzero(C <= 1e-3 * C[0])[0]
            trials[ls].append(hit[0] if hit.size else 400)
    assert np.median(trials[True]) <= 0.9 * np.median(trials[None]), trials


def test_streamed_chunks_take_the_in_memory_runs_steps():
    pb = _sine()
    kw = dict(solver="accumulate", max_steps=15, line_search=True)
    whole = fb.levenberg_marquardt(pb.net, pb.params, pb.x, pb.y, **kw)
    chunks = fb.Chunks.of(pb.x, pb.y, 16)
    streamed = fb.levenberg_marquardt(pb.net, pb.params, chunks, None, **kw)
    np.testing.assert_allclose(np.asarray(streamed.history.loss), np.asarray(whole.history.loss), rtol=1e-8)


def test_least_squares_and_newton_take_the_search_too():
    pb = _sine()
    ls = fb.optim.least_squares(
        lambda p: fb.forward(pb.net, p, pb.x)[0] - pb.y, pb.params, max_steps=20, line_search=True
    )
    lm = fb.levenberg_marquardt(pb.net, pb.params, pb.x, pb.y, solver="dense", max_steps=20, line_search=True)
    np.testing.assert_allclose(np.asarray(ls.history.loss), np.asarray(lm.history.loss), rtol=1e-9)
    nt = fb.newton(
        pb.net, pb.params, pb.x, pb.y, max_steps=20, line_search=fb.optim.Backtracking(max_steps=5)
    )
    C = np.asarray(nt.history.loss)
    assert C[np.isfinite(C)][-1] < C[0]
