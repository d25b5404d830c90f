"""Levenberg-Marquardt: each solver's step against the closed form, least squares in one step, the
loss never rising, rejected and singular steps, stopping rules, errors. Float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import Problem, make_problem

import fbackprop as fb
from fbackprop.optim import dual
from fbackprop.optim import solvers as S
from fbackprop.optim.levenberg_marquardt import GOAL, MAX_FAIL, MAX_STEPS, MIN_GRAD


def solver_problem(pb, scale_d, chunk_size=4):
    theta, unflatten = fb.flatten(pb.params)
    loss = fb.losses.get(pb.loss)
    x, y = fb.validate.check_call(pb.net, loss, pb.params, pb.x, pb.y)
    return theta, S.Problem(pb.net, loss, x, y, unflatten, scale_d, chunk_size, 1e-13, 10 * theta.size)


@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("scale_d", [False, True])
def test_every_solver_gives_the_closed_form_step(loss, scale_d):
    """delta = -(G + mu D)^-1 g with G = sum_n J_n^T H_n J_n, g = sum_n J_n^T dl_n/dyhat_n (J^T e)."""
    assert_closed_form_steps(make_problem([3, 4, 3], ["tanh"], loss, n=7, seed=2), scale_d)


def assert_closed_form_steps(pb, scale_d):
    """Each solver's step at mu = 0.3 against ``-(G + mu D)^-1 g`` from the autodiff Jacobian."""
    theta, sp = solver_problem(pb, scale_d)
    J = fb.as_matrix(fb.jacobian(pb.net, "autodiff")(pb.params, pb.x))
    yhat = pb.net.apply(pb.params, pb.x)
    H, u = sp.loss.hessian(yhat, sp.y), sp.loss.grad(yhat, sp.y)
    G, g = jnp.einsum("nap,nab,nbq->pq", J, H, J), jnp.einsum("nap,na->p", J, u)
    D = jnp.diag(jnp.diag(G)) if scale_d else jnp.eye(theta.size)
    mu = 0.3
    closed = -jnp.linalg.solve(G + mu * D, g)
    linearize = {
        "dense": S.linearize_dense,
        "accumulate": S.linearize_accumulate,
        "cg": S.linearize_cg,
        "dual": dual.linearize_dual,
    }
    solve = {
        "dense": S.solve_normal,
        "accumulate": S.solve_normal,
        "cg": lambda lin, mu: S.solve_cg(sp, lin, mu),
        "dual": lambda lin, mu: dual.solve_dual(sp, lin, mu),
    }

    predicted = -(g @ closed + 0.5 * closed @ G @ closed)  # the quadratic model's decrease

    @jax.jit
    def steps(theta):
        return {name: solve[name](lin(sp, theta), mu) for name, lin in linearize.items()}

    for name, (delta, pred) in steps(theta).items():
        tol = 1e-7 if name == "cg" else 1e-10
        assert float(jnp.abs(delta - closed).max()) <= tol * float(jnp.abs(closed).max()), name
        np.testing.assert_allclose(pred, predicted, rtol=tol, err_msg=name)


@pytest.mark.parametrize("solver", ["dense", "accumulate", "cg"])
def test_a_linear_model_is_solved_by_one_step_as_mu_goes_to_zero(solver):
    net = fb.mlp([3, 2], output="identity")
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x, y = jax.random.normal(kx, (20, 3)), jax.random.normal(ky, (20, 2))
    r = fb.levenberg_marquardt(net, net.init(kp), x, y, solver=solver, mu=1e-12, max_steps=1)
    X = jnp.concatenate([x, jnp.ones((20, 1))], axis=1)
    coef = jnp.linalg.lstsq(X, y)[0]  # (4, 2): W^T stacked on b
    np.testing.assert_allclose(r.params[0]["W"], coef[:3].T, atol=1e-8)
    np.testing.assert_allclose(r.params[0]["b"], coef[3], atol=1e-8)
    assert int(r.history.accepted[1]) == 1


def test_dual_takes_the_minimum_norm_step_when_there_are_fewer_residuals_than_params():
    """N n_out = 6 < P = 22: as mu -> 0 the dual step is J^+ (-e), which fits the data exactly."""
    net = fb.mlp([10, 2], output="identity")
    kx, ky, kp = jax.random.split(jax.random.key(1), 3)
    x, y = jax.random.normal(kx, (3, 10)), jax.random.normal(ky, (3, 2))
    p = net.init(kp)
    r = fb.levenberg_marquardt(net, p, x, y, solver="dual", mu=1e-12, max_steps=1)
    J = fb.as_matrix(fb.jacobian(net)(p, x)).reshape(6, -1)
    e = (net.apply(p, x) - y).reshape(-1)
    expected = fb.flatten(p)[0] - jnp.linalg.pinv(J) @ e
    np.testing.assert_allclose(fb.flatten(r.params)[0], expected, atol=1e-9)
    assert float(r.history.loss[1]) <= 1e-18


def test_the_loss_never_rises_over_100_random_problems():
    net = fb.mlp([2, 5, 1], activation="tanh")
    worst_rise, rejections = -np.inf, 0
    for seed in range(100):
        kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
        x, y = jax.random.normal(kx, (16, 2)), jax.random.normal(ky, (16, 1))
        r = fb.levenberg_marquardt(net, net.init(kp), x, y, max_steps=25)
        loss = np.asarray(r.history.loss)[: int(r.iterations) + 1]
        worst_rise = max(worst_rise, float(np.max(np.diff(loss))))
        accepted = np.asarray(r.history.accepted)[1 : int(r.iterations) + 1]
        rejections += int(np.sum(accepted == 0))
        assert np.all(np.diff(loss)[accepted == 0] == 0)  # a rejected step changes nothing
        assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(r.params))
    assert worst_rise <= 0.0
    assert rejections > 0  # the rejection path was exercised


def test_spd_solve_solves_a_positive_definite_system_and_gives_nan_otherwise():
    """Matches ``jnp.linalg.solve`` on a symmetric positive definite system; an indefinite one gives
    NaN (the Levenberg-Marquardt step is then rejected and mu raised), not an error."""
    B = jax.random.normal(jax.random.key(3), (7, 7))
    A, b = B @ B.T + 0.1 * jnp.eye(7), jnp.arange(7.0)
    np.testing.assert_allclose(jax.jit(S.spd_solve)(A, b), jnp.linalg.solve(A, b), rtol=1e-10)
    assert bool(jnp.all(jnp.isnan(S.spd_solve(A - 10.0 * jnp.eye(7), b))))  # indefinite: NaN, no error


def test_a_singular_system_raises_mu_instead_of_making_nan():
    """More parameters than residuals and almost no damping: G + mu I is numerically singular."""
    net = fb.mlp([2, 8, 1], activation="tanh")
    x, y = jax.random.normal(jax.random.key(0), (3, 2)), jnp.ones((3, 1)) * 50.0
    r = fb.levenberg_marquardt(
        net, net.init(jax.random.key(1)), x, y, solver="dense", mu=1e-300, max_steps=30
    )
    mu = np.asarray(r.history.mu)[: int(r.iterations) + 1]
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(r.params))
    assert np.all(np.isfinite(np.asarray(r.history.loss)[: int(r.iterations) + 1]))
    assert mu.max() > 1e-290  # mu rose from 1e-300


@pytest.mark.parametrize("damping", ["marquardt", "nielsen", "trust_region"])
@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
def test_every_damping_and_scaling_fits_the_sine(damping, scaling):
    x, y = fb.data.sine(60, dtype=np.float64)
    net = fb.mlp([1, 8, 1], activation="tanh")
    for seed in range(5):  # every start of 0-4 (one program), 20x down: measured 75x or more
        r = fb.levenberg_marquardt(
            net, net.init(jax.random.key(seed)), x, y, damping=damping, scaling=scaling, max_steps=150
        )
        C0, C = float(r.history.loss[0]), float(r.history.loss[int(r.iterations)])
        assert C <= 0.05 * C0, (seed, r.message)


def test_cross_entropy_trains_through_the_gauss_newton_form():
    x, y = fb.data.two_moons(100, seed=0, dtype=np.float64)
    net = fb.mlp([2, 8, 2], activation="tanh")
    r = fb.levenberg_marquardt(net, net.init(jax.random.key(0)), x, y, loss="cross_entropy", max_steps=60)
    assert float(r.history.loss[int(r.iterations)]) <= 0.05
    accuracy = float(jnp.mean(jnp.argmax(net.apply(r.params, x), axis=1) == y))
    assert accuracy >= 0.98


def test_stopping_rules_goal_min_grad_max_steps():
    x, y = fb.data.sine(40, dtype=np.float64)
    net = fb.mlp([1, 6, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    r = fb.levenberg_marquardt(net, p, x, y, goal=1e-2)
    assert int(r.status) == GOAL and float(r.history.loss[int(r.iterations)]) <= 1e-2
    assert float(r.history.loss[int(r.iterations) - 1]) > 1e-2 or int(r.iterations) == 0
    r = fb.levenberg_marquardt(net, p, x, y, min_grad=1e-1)
    assert int(r.status) == MIN_GRAD and float(r.history.grad_norm[int(r.iterations)]) <= 1e-1
    r = fb.levenberg_marquardt(net, p, x, y, max_steps=5)
    assert int(r.status) == MAX_STEPS and int(r.iterations) == 5 and np.isnan(r.history.loss[-1]) == False  # noqa: E712
    assert "max epochs/steps reached after 5 iterations" in r.message


def test_validation_failures_stop_and_return_the_best_params():
    x, y = fb.data.sine(40, dtype=np.float64)
    net = fb.mlp([1, 6, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    r = fb.levenberg_marquardt(net, p, x, y, val=(x, -y), max_fail=3)  # fitting y moves away from -y
    assert int(r.status) == MAX_FAIL
    val = np.asarray(r.history.val_loss)[: int(r.iterations) + 1]
    best = int(np.nanargmin(val))
    best_loss = float(fb.losses.squared_error(net.apply(r.params, x), -y))
    assert abs(best_loss - val[best]) <= 1e-12 * val[best]


def test_progress_reports_every_iteration_from_the_compiled_loop(capsys):
    x, y = fb.data.sine(40, dtype=np.float64)
    net = fb.mlp([1, 6, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    seen = []
    r = fb.levenberg_marquardt(
        net, p, x, y, max_steps=7, progress=lambda *row: seen.append([float(v) for v in row])
    )
    k = int(r.iterations)
    np.testing.assert_array_equal([row[0] for row in seen], np.arange(1, k + 1))
    np.testing.assert_allclose([row[1] for row in seen], r.history.loss[1 : k + 1], rtol=1e-14)
    np.testing.assert_allclose([row[2] for row in seen], r.history.mu[1 : k + 1], rtol=1e-14)
    np.testing.assert_array_equal([row[3] for row in seen], r.history.accepted[1 : k + 1])
    fb.levenberg_marquardt(net, p, x, y, max_steps=3, progress=True)
    assert capsys.readouterr().out.count("LM ") == 3
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        fb.levenberg_marquardt(net, p, x, y, progress="yes")


def test_bad_options_are_named():
    net = fb.mlp([1, 2, 1])
    p, x, y = net.init(jax.random.key(0)), np.ones((3, 1)), np.ones((3, 1))
    with pytest.raises(ValueError, match="solver must be one of .*; got 'qr'"):
        fb.levenberg_marquardt(net, p, x, y, solver="qr")
    with pytest.raises(ValueError, match="damping must be one of .*; got 'fletcher'"):
        fb.levenberg_marquardt(net, p, x, y, damping="fletcher")
    with pytest.raises(ValueError, match=r"mu must lie in \(0.0, inf\]; got 0.0"):
        fb.levenberg_marquardt(net, p, x, y, mu=0.0)
    with pytest.raises(TypeError, match="needs an fbackprop Network"):
        fb.levenberg_marquardt("net", p, x, y)  # an apply(params, x) callable is taken (autodiff)
    with pytest.raises(ValueError, match="y has 2 rows but x has 3"):
        fb.levenberg_marquardt(net, p, x, y[:2])


def test_auto_picks_by_shape():
    assert fb.optim.auto_solver(100, 1000) == "dual"
    assert fb.optim.auto_solver(10_000, 1000) == "dense"
    assert fb.optim.auto_solver(100_000, 1000) == "accumulate"
    assert fb.optim.auto_solver(100_000, 100_000) == "cg"


@pytest.mark.slow  # make test-slow: a subprocess with four host devices
def test_data_parallel_over_four_devices_equals_one_device(tmp_path):
    """The batch sharded over 4 forced host devices: G, g and the GGN products are all-reduced sums,
    equal to one device's to rounding; the LM runs then agree to the conditioning of their solves."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import fbackprop as fb
        from fbackprop.train import shard_batch
        import test_levenberg_marquardt as t
        assert len(jax.devices()) == 4
        net, p, x, y = t.parallel_problem()
        xs, ys = shard_batch(x, y)
        G, g, Gv = t.normal_equations_and_product(net, p, xs, ys)
        assert len(xs.sharding.device_set) == 4
        r = fb.levenberg_marquardt(net, p, x, y, max_steps=6, data_parallel=True)
        np.savez({str(tmp_path / "out.npz")!r}, G=G, g=g, Gv=Gv, loss=r.history.loss,
                 accepted=r.history.accepted)
    """)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    out = np.load(tmp_path / "out.npz")
    net, p, x, y = parallel_problem()
    G, g, Gv = normal_equations_and_product(net, p, x, y)
    for name, one in (("G", G), ("g", g), ("Gv", Gv)):
        np.testing.assert_allclose(
            out[name], one, rtol=1e-12, atol=1e-14 * float(np.abs(one).max()), err_msg=name
        )
    r = fb.levenberg_marquardt(net, p, x, y, max_steps=6)
    np.testing.assert_array_equal(out["accepted"], r.history.accepted)
    np.testing.assert_allclose(out["loss"], r.history.loss, rtol=1e-5)


def parallel_problem():
    net = fb.mlp([2, 6, 1], activation="tanh")
    x, y = fb.data.sine(64, dtype=np.float64)
    return net, net.init(jax.random.key(0)), np.concatenate([x, x**2], axis=1), y


def normal_equations_and_product(net, params, x, y):
    """``G``, ``g`` (dense solver) and ``G v`` (cg solver's product) at ``params``."""
    theta, sp = solver_problem(Problem(net, params, x, y, "squared_error"), False)
    lin = jax.jit(lambda t: S.linearize_dense(sp, t))(theta)
    Gv = jax.jit(lambda t, v: S._ggn_times(sp, t, v))(
        theta, jnp.cos(jnp.arange(theta.size, dtype=theta.dtype))
    )
    return np.asarray(lin.G), np.asarray(lin.g), np.asarray(Gv)


def test_the_whole_call_can_sit_inside_jit():
    """The checks read static shapes only, so an outer jit (as a user would wrap a training step) works."""
    x, y = fb.data.sine(30, dtype=np.float64)
    net = fb.mlp([1, 5, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    direct = fb.levenberg_marquardt(net, p, x, y, max_steps=6, goal=1e-4)
    jitted = jax.jit(lambda p, goal: fb.levenberg_marquardt(net, p, x, y, max_steps=6, goal=goal))(p, 1e-4)
    chex.assert_trees_all_close(jitted.params, direct.params, rtol=1e-12)
    np.testing.assert_allclose(jitted.history.loss, direct.history.loss, rtol=1e-12)
    assert int(jitted.iterations) == int(direct.iterations)


def test_runs_vmapped_over_seeds_equal_the_runs_one_by_one():
    """A vmapped while_loop runs until the slowest seed stops; each run's params and history are its own."""
    x, y = fb.data.parity(3, coding="bipolar", dtype=np.float64)
    net = fb.mlp([3, 3, 1], activation="tanh")
    stacked = fb.init_many(net, jax.random.key(0), 4, jnp.float64)
    run = lambda p: fb.levenberg_marquardt(net, p, x, y, max_steps=40)
    together = jax.vmap(run)(stacked)
    assert len(set(np.asarray(together.iterations).tolist())) > 1  # the seeds stop at different iterations
    for i in range(4):
        alone = run(jax.tree.map(lambda a, i=i: a[i], stacked))
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], together.params), alone.params, rtol=1e-10
        )
        np.testing.assert_allclose(together.history.loss[i], alone.history.loss, rtol=1e-10)
        assert int(together.status[i]) == int(alone.status) and int(together.iterations[i]) == int(
            alone.iterations
        )


# --- issue 11: the package's status codes, a non-finite start, the params' dtype, integer options ---
def test_status_codes_are_the_packages_and_gauss_newton_leaves_the_table_alone():
    import importlib

    from fbackprop.status import MESSAGES, Status

    gn_module = importlib.import_module("fbackprop.optim.gauss_newton")  # the modules, not the functions
    lm_module = importlib.import_module("fbackprop.optim.levenberg_marquardt")

    assert lm_module.STATUS is MESSAGES and gn_module.STATUS is MESSAGES
    assert (GOAL, MIN_GRAD, MAX_FAIL, MAX_STEPS) == (
        Status.GOAL,
        Status.MIN_GRAD,
        Status.MAX_FAIL,
        Status.MAX_STEPS,
    )
    assert (int(MIN_GRAD), int(gn_module.LINE_SEARCH), int(lm_module.NONFINITE_START)) == (4, 7, 8)
    assert set(MESSAGES) == set(int(s) for s in Status)  # nothing added at import


def nonfinite_x():
    x, y = fb.data.sine(12, dtype=np.float64)
    x = np.array(x)
    x[3, 0] = np.nan
    return x, y


SECOND_ORDER = {
    "levenberg_marquardt": lambda net, p, x, y: fb.levenberg_marquardt(net, p, x, y, max_steps=4),
    "newton": lambda net, p, x, y: fb.newton(net, p, x, y, max_steps=4),
    "gauss_newton": lambda net, p, x, y: fb.gauss_newton(net, p, x, y, max_steps=4),
    "hessian_free": lambda net, p, x, y: fb.hessian_free(net, p, x, y, max_steps=4, cg_iters=5),
}


@pytest.mark.parametrize("method", sorted(SECOND_ORDER))
def test_nan_data_under_jit_stops_at_once_with_nonfinite_start(method):
    """Under jit the data cannot be read at the boundary: the run stops before its first step, the
    params unchanged, and the message says so (not "rejects 14 steps, loss nan -> nan")."""
    from fbackprop.status import Status

    net = fb.mlp([1, 4, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    x, y = nonfinite_x()
    run = SECOND_ORDER[method]
    r = jax.jit(lambda p, x: run(net, p, x, y))(p, x)
    assert int(r.status) == Status.NONFINITE_START and int(r.iterations) == 0
    chex.assert_trees_all_equal(r.params, p)
    assert np.isnan(float(r.history.loss[0])) and np.all(np.isnan(np.asarray(r.history.loss[1:])))
    assert r.message.startswith("the loss is not finite at the start") and "no step was taken" in r.message
    assert (
        "the params are finite, so the data (x, y, val, or what a residual function closes over) hold NaN/Inf"
        in r.message
    )
    with pytest.raises(ValueError, match=r"x holds 1 non-finite value \(the first, nan, at index \(3, 0\)\)"):
        run(net, p, x, y)  # outside jit: refused, x named


def test_nan_params_under_jit_are_named_in_the_message():
    net = fb.mlp([1, 4, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    p = (p[0], {"W": p[1]["W"].at[0, 2].set(jnp.inf), "b": p[1]["b"]})
    x, y = fb.data.sine(12, dtype=np.float64)
    r = jax.jit(lambda p: fb.levenberg_marquardt(net, p, x, y, max_steps=4))(p)
    assert int(r.status) == 8 and "params[1]['W'] holds 1 non-finite value" in r.message


def test_an_overflowing_start_loss_stops_with_nonfinite_start_outside_jit_too():
    """Finite inputs whose loss overflows (x = 1e200 through a linear model): no step, status 8."""
    net = fb.mlp([1, 1], output="identity")
    p = net.init(jax.random.key(0))
    x, y = np.full((3, 1), 1e200), np.zeros((3, 1))
    for run in (
        lambda: fb.levenberg_marquardt(net, p, x, y, max_steps=5),
        lambda: fb.gauss_newton(net, p, x, y),
        lambda: fb.least_squares(lambda q: net.apply(q, x) - y, p, max_steps=5),
    ):
        r = run()
        assert int(r.status) == 8 and int(r.iterations) == 0 and np.isinf(float(r.history.loss[0]))
        assert "the loss is not finite at the start" in r.message and "loss inf" in r.message


@pytest.mark.parametrize("solver", ["dense", "accumulate", "cg", "dual"])
def test_float32_params_with_float64_data_run_in_float32(solver):
    """The params' dtype is the computation's: x and y are cast to it, the loop state is held in it
    (no carry-type error, no dtype-promotion warning), and the loss falls."""
    import warnings

    net = fb.mlp([1, 4, 1], activation="tanh")
    p = jax.tree.map(lambda a: a.astype(jnp.float32), net.init(jax.random.key(0)))
    x, y = fb.data.sine(20, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = fb.levenberg_marquardt(
            net, p, x, y, solver=solver, scaling="marquardt", chunk_size=8, max_steps=10, val=(x, y)
        )
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(r.params))
    assert all(h.dtype == jnp.float32 for h in r.history)
    loss = np.asarray(r.history.loss)[: int(r.iterations) + 1]
    assert np.all(np.diff(loss) <= 0) and loss[-1] < 0.5 * loss[0]


def test_numpy_and_jax_integers_are_accepted_as_counts():
    net = fb.mlp([1, 4, 1], activation="tanh")
    p = net.init(jax.random.key(0))
    x, y = fb.data.sine(12, dtype=np.float64)
    a = fb.levenberg_marquardt(
        net,
        p,
        x,
        y,
        solver="accumulate",
        max_steps=np.int64(3),
        chunk_size=jnp.int32(5),
        max_fail=np.int32(2),
        val=(x, y),
    )
    b = fb.levenberg_marquardt(
        net, p, x, y, solver="accumulate", max_steps=3, chunk_size=5, max_fail=2, val=(x, y)
    )
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    assert a.history.loss.shape == (4,)


def _cnn(loss, n=4):
    L = fb.layers
    net = fb.serial(
        L.Conv2D(2, (2, 2), padding="SAME"), L.Activation("tanh"), L.MaxPool2D((2, 2)),
        L.Residual(L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("softplus")),
        L.Flatten(), L.Dense(2), input_shape=(4, 4, 1),
    )  # fmt: skip
    kx, ky, kp = jax.random.split(jax.random.key(5), 3)
    y = jax.random.randint(ky, (n,), 0, 2) if loss == "cross_entropy" else jax.random.normal(ky, (n, 2))
    return Problem(net, net.init(kp), jax.random.normal(kx, (n, 4, 4, 1)), y, loss)


@pytest.mark.parametrize(
    ("loss", "scale_d"),
    [pytest.param("squared_error", False, marks=pytest.mark.sweep), ("cross_entropy", True)],
)
def test_every_solver_gives_the_closed_form_step_on_a_cnn(loss, scale_d):
    """The same on a CNN with a residual block: N n_out = 8 < P = 74, so the dual solver applies too."""
    assert_closed_form_steps(_cnn(loss), scale_d)


@pytest.mark.parametrize("solver", ["dense", "accumulate", "cg", "dual"])
def test_levenberg_marquardt_fits_a_cnn_with_every_solver(solver):
    pb = _cnn("squared_error", n=3)
    r = fb.levenberg_marquardt(pb.net, pb.params, pb.x, pb.y, solver=solver, max_steps=30, chunk_size=2)
    ref = fb.levenberg_marquardt(pb.net, pb.params, pb.x, pb.y, solver="dense", max_steps=30)
    C = np.asarray(r.history.loss)
    C = C[np.isfinite(C)]
    assert np.all(np.diff(C) <= 1e-12 * C[0]) and C[-1] < 1e-3 * C[0]  # never rises; 6 residuals, 74 params
    if solver == "accumulate":  # the same normal equations, summed over chunks: the same run
        np.testing.assert_allclose(r.history.loss, ref.history.loss, rtol=1e-8, atol=1e-12 * C[0])
