"""Training loops: modes agree where they must, stopping rules, divergence, vmapped = sequential."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fbackprop as fb
from fbackprop.status import MESSAGES, Status
from fbackprop.train import DIVERGED, GOAL, MAX_EPOCHS, init_many, train, train_many

NET = fb.mlp([3, 3, 1], activation="sigmoid", init="uniform")
X, Y = fb.data.seed_example(np.float64)
P0 = fb.data.seed_example_params(np.float64)


def test_batch_mode_is_gradient_descent():
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=3)
    p = P0
    for _ in range(3):
        p = jax.tree.map(lambda w, g: w - 0.1 * g, p, fb.backprop(NET, "squared_error")(p, X, Y))
    chex.assert_trees_all_close(r.params, p, rtol=1e-12)
    np.testing.assert_allclose(r.history.loss[-1], fb.losses.squared_error(NET.apply(p, X), Y), rtol=1e-12)
    np.testing.assert_allclose(r.history.loss[0], fb.losses.squared_error(NET.apply(P0, X), Y), rtol=1e-12)
    assert int(r.status) == MAX_EPOCHS and int(r.epochs) == 3 and int(r.diverged_step) == -1


def test_one_online_epoch_on_one_example_equals_one_batch_step():
    x1, y1 = X[:1], Y[:1]
    online = train(NET, "squared_error", P0, x1, y1, optax.sgd(0.3), epochs=1, mode="online")
    batch = train(NET, "squared_error", P0, x1, y1, optax.sgd(0.3), epochs=1, mode="batch")
    chex.assert_trees_all_close(online.params, batch.params, rtol=1e-14)


def test_online_epoch_updates_after_each_example_in_order():
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.2), epochs=1, mode="online")
    p = P0
    for n in range(6):
        p = jax.tree.map(
            lambda w, g: w - 0.2 * g, p, fb.backprop(NET, "squared_error")(p, X[n : n + 1], Y[n : n + 1])
        )
    chex.assert_trees_all_close(r.params, p, rtol=1e-12)


def test_minibatch_is_deterministic_by_key_and_reshuffles():
    kw = dict(epochs=20, mode="minibatch", batch_size=2)
    a = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), key=jax.random.key(1), **kw)
    b = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), key=jax.random.key(1), **kw)
    c = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), key=jax.random.key(2), **kw)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    assert not np.array_equal(a.history.loss, c.history.loss)
    with pytest.raises(ValueError, match="explicit key"):
        train(NET, "squared_error", P0, X, Y, epochs=1, mode="minibatch", batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be an integer from 1 to N = 6"):
        train(NET, "squared_error", P0, X, Y, epochs=1, mode="minibatch", batch_size=7, key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"unknown mode 'stochastic'; expected one of \['online', 'batch', 'minibatch'\]"
    ):
        train(NET, "squared_error", P0, X, Y, epochs=1, mode="stochastic")


def test_backprop_and_autodiff_training_agree_with_adam():
    kw = dict(epochs=300, val=(X[:3], Y[:3]))
    a = train(NET, "squared_error", P0, X, Y, optax.adam(0.01), gradient="backprop", **kw)
    b = train(NET, "squared_error", P0, X, Y, optax.adam(0.01), gradient="autodiff", **kw)
    np.testing.assert_allclose(a.history.loss, b.history.loss, rtol=1e-9)
    assert bool(jnp.all(jnp.isfinite(a.history.val_loss)))


def test_loss_goal_stops_the_run():
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=10000, goal=1e-2)
    e = int(r.epochs)
    assert int(r.status) == GOAL and e < 10000 and r.history.loss.shape == (10001,)
    assert r.history.loss[e] <= 1e-2 < r.history.loss[e - 1]
    assert bool(jnp.all(jnp.isnan(r.history.loss[e + 1 :])))
    np.testing.assert_allclose(
        fb.losses.squared_error(NET.apply(r.params, X), Y), r.history.loss[e], rtol=1e-12
    )
    assert "loss goal reached" in r.message


@pytest.mark.parametrize("mode", ["batch", "online"])
def test_divergence_stops_and_keeps_the_last_finite_params(mode):
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(1e3), epochs=100, mode=mode)
    assert int(r.status) == DIVERGED and "diverged at step" in r.message
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(r.params))
    step = int(r.diverged_step)
    assert step >= 0
    # replaying the same updates: the step reported is the first whose loss or update is not finite
    steps_per_epoch = 1 if mode == "batch" else 6
    p, grad = P0, fb.backprop(NET, "squared_error")  # (cached: an inline fb.backprop(...) would reuse it)
    for s in range(step):
        idx = slice(None) if mode == "batch" else slice(s % 6, s % 6 + 1)
        p = jax.tree.map(lambda w, g: w - 1e3 * g, p, grad(p, X[idx], Y[idx]))
    chex.assert_trees_all_close(r.params, p, rtol=1e-10)
    assert int(r.epochs) <= step // steps_per_epoch + 1
    assert np.isfinite(fb.losses.squared_error(NET.apply(r.params, X), Y))


def test_vmapped_runs_equal_sequential_runs():
    params = init_many(NET, jax.random.key(0), 4)
    many = train_many(NET, "squared_error", params, X, Y, optax.sgd(0.5), epochs=50)
    for k in range(4):
        one = train(
            NET, "squared_error", jax.tree.map(lambda l, k=k: l[k], params), X, Y, optax.sgd(0.5), epochs=50
        )
        np.testing.assert_allclose(many.history.loss[k], one.history.loss, rtol=1e-12)


def test_learning_rate_grid():
    params = jax.tree.map(lambda l: jnp.stack([l] * 3), P0)
    rates = jnp.array([0.01, 0.1, 1.0])
    r = train_many(NET, "squared_error", params, X, Y, optax.sgd, hyper=rates, epochs=100)
    for k, lr in enumerate([0.01, 0.1, 1.0]):
        one = train(NET, "squared_error", P0, X, Y, optax.sgd(lr), epochs=100)
        np.testing.assert_allclose(r.history.loss[k], one.history.loss, rtol=1e-12)
    with pytest.raises(TypeError, match="function h -> GradientTransformation"):
        train_many(NET, "squared_error", params, X, Y, optax.sgd(0.1), hyper=rates, epochs=1)


def test_repeated_calls_reuse_the_compiled_run():
    from fbackprop.train import _compiled

    sgd = optax.sgd(0.1)
    train(NET, "squared_error", P0, X, Y, sgd, epochs=5)
    before = _compiled.cache_info()
    train(NET, "squared_error", P0, X, Y, sgd, epochs=5)
    after = _compiled.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


@pytest.mark.slow  # make test-slow: a subprocess with four host devices
def test_runs_sharded_over_four_devices_equal_one_device(tmp_path):
    """Four forced host devices (a separate process: the device count is fixed at JAX start-up)."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import jax, numpy as np, optax
        jax.config.update("jax_enable_x64", True)
        import fbackprop as fb
        assert len(jax.devices()) == 4
        net = fb.mlp([3, 3, 1], activation="sigmoid", init="uniform")
        x, y = fb.data.seed_example(np.float64)
        p = fb.init_many(net, jax.random.key(0), 8)
        r = fb.train_many(net, "squared_error", p, x, y, optax.sgd(0.5), epochs=50)
        assert len(r.history.loss.sharding.device_set) == 4
        np.save({str(tmp_path / "loss.npy")!r}, np.asarray(r.history.loss))
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    one = train_many(
        NET, "squared_error", init_many(NET, jax.random.key(0), 8), X, Y, optax.sgd(0.5), epochs=50
    )
    np.testing.assert_allclose(np.load(tmp_path / "loss.npy"), one.history.loss, rtol=1e-12)


def test_data_parallel_over_four_devices_equals_one_device(tmp_path):
    """Split the batch, sum the deltas (data parallelism), on 4 forced host devices, against one device."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import jax, numpy as np, optax
        jax.config.update("jax_enable_x64", True)
        import fbackprop as fb
        from fbackprop.train import shard_batch
        assert len(jax.devices()) == 4
        net = fb.mlp([2, 8, 3], activation="tanh")
        x, y = fb.data.two_moons(64, seed=1, dtype=np.float64)
        params = net.init(jax.random.key(0))
        xs, ys = shard_batch(x, y)
        assert len(xs.sharding.device_set) == 4
        g = fb.backprop(net, "cross_entropy")(params, xs, ys)
        r = fb.train(net, "cross_entropy", params, x, y, optax.adam(0.01), epochs=40, data_parallel=True)
        np.save({str(tmp_path / "loss.npy")!r}, np.asarray(r.history.loss))
        np.save({str(tmp_path / "dW.npy")!r}, np.asarray(g[0]["W"]))
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    net = fb.mlp([2, 8, 3], activation="tanh")
    x, y = fb.data.two_moons(64, seed=1, dtype=np.float64)
    params = net.init(jax.random.key(0))
    np.testing.assert_allclose(
        np.load(tmp_path / "dW.npy"), fb.backprop(net, "cross_entropy")(params, x, y)[0]["W"], rtol=1e-12
    )
    one = train(net, "cross_entropy", params, x, y, optax.adam(0.01), epochs=40)
    np.testing.assert_allclose(np.load(tmp_path / "loss.npy"), one.history.loss, rtol=1e-10)


def test_progress_bar_follows_the_compiled_run(capsys):
    shown = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=300, progress=True)
    plain = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=300, progress=False)
    np.testing.assert_array_equal(shown.history.loss, plain.history.loss)
    err = capsys.readouterr().err
    assert "300/300" in err and "loss=" in err


def test_nan_in_the_data_is_refused_naming_the_data_not_the_parameters():
    x = X.copy()
    x[3, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"^x holds 1 non-finite value \(the first, nan, at index \(3, 2\)\)"
    ):
        train(NET, "squared_error", P0, x, Y, optax.sgd(0.1), epochs=10)
    bad = (P0[0], {"W": jnp.asarray(P0[1]["W"]).at[0, 0].set(jnp.inf), "b": P0[1]["b"]})
    with pytest.raises(ValueError, match=r"^params\[1\]\['W'\] holds 1 non-finite value \(the first, inf"):
        train(NET, "squared_error", bad, X, Y, optax.sgd(0.1), epochs=10, mode="online")


@pytest.mark.parametrize("mode", ["batch", "online"])
def test_a_loss_that_overflows_at_the_start_is_nonfinite_start(mode):
    """Finite params whose loss is not finite (outputs ~1e300, squared): nothing is trained."""
    huge = (P0[0], {"W": jnp.full_like(P0[1]["W"], 1e300), "b": P0[1]["b"]})
    r = train(NET, "squared_error", huge, X, Y, optax.sgd(0.1), epochs=10, mode=mode)
    assert int(r.status) == Status.NONFINITE_START and int(r.epochs) == 0 and int(r.diverged_step) == -1
    chex.assert_trees_all_equal(r.params, huge)
    assert "not finite at the initial parameters" in r.message and "under jit" in r.message


def test_nan_under_jit_is_reported_as_nonfinite_start():
    """Under jit the values cannot be checked: the status says what happened."""
    bad = (P0[0], {"W": jnp.asarray(P0[1]["W"]).at[0, 0].set(jnp.nan), "b": P0[1]["b"]})
    sgd = optax.sgd(0.1)
    status, epochs = jax.jit(
        lambda p: (lambda r: (r.status, r.epochs))(train(NET, "squared_error", p, X, Y, sgd, epochs=5))
    )(bad)
    assert int(status) == Status.NONFINITE_START and int(epochs) == 0
    assert fb.status.message(status) == MESSAGES[Status.NONFINITE_START]


def test_status_codes_are_the_packages():
    from fbackprop.train import NONFINITE_START, RUNNING, STATUS

    assert (RUNNING, MAX_EPOCHS, GOAL, DIVERGED, NONFINITE_START) == (0, 1, 2, 3, 8)
    assert DIVERGED is Status.DIVERGED and STATUS is MESSAGES
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=2)
    assert r.message.startswith(MESSAGES[Status.MAX_EPOCHS])


def test_float32_params_with_float64_data_train_with_adam():
    """The params' dtype is the computation's: x, y and val are cast to float32."""
    p32 = jax.tree.map(lambda l: jnp.asarray(l, jnp.float32), P0)
    r = train(NET, "squared_error", p32, X, Y, optax.adam(0.01), epochs=50, val=(X[:3], Y[:3]))
    assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(r.params))
    assert r.history.loss.dtype == jnp.float32 and int(r.status) == MAX_EPOCHS
    ref = train(NET, "squared_error", P0, X, Y, optax.adam(0.01), epochs=50)
    np.testing.assert_allclose(r.history.loss, ref.history.loss, rtol=1e-4)  # float32 against float64
    assert r.history.loss[-1] < r.history.loss[0]


def test_integer_like_options_are_accepted():
    kw = dict(mode="minibatch", key=jax.random.key(3))
    a = train(
        NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=np.int64(4), batch_size=np.int64(2), **kw
    )
    b = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=jnp.int32(4), batch_size=2, **kw)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    assert a.history.loss.shape == (5,)


def test_goal_none_means_no_goal():
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=5, goal=None)
    assert int(r.status) == MAX_EPOCHS and int(r.epochs) == 5
    r = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=5, goal=np.inf)
    assert int(r.status) == GOAL and int(r.epochs) == 0


def test_one_optimizer_object_compiles_once_across_calls(compiles):
    """New params and data of the same shapes reuse the program; a fresh optax object cannot (an
    opaque closure), as train's docstring says."""
    adam = optax.adam(0.01)
    train(NET, "squared_error", P0, X, Y, adam, epochs=7)
    first = compiles()
    assert first >= 1
    p1 = jax.tree.map(lambda l: l + 0.5, P0)
    train(NET, "squared_error", p1, X + 1.0, Y * 0.5, adam, epochs=7)
    assert compiles() == first
    train(NET, "squared_error", P0, X, Y, optax.adam(0.01), epochs=7)
    assert compiles() > first


def test_the_default_optimizer_compiles_once(compiles):
    train(NET, "squared_error", P0, X, Y, epochs=3)
    first = compiles()
    train(NET, "squared_error", P0, X, Y, epochs=3)
    assert compiles() == first


def test_the_progress_bar_run_is_cached(compiles, capsys):
    sgd = optax.sgd(0.1)
    train(NET, "squared_error", P0, X, Y, sgd, epochs=11, progress=True)
    first = compiles()
    train(NET, "squared_error", P0, X, Y, sgd, epochs=11, progress=True)
    assert compiles() == first and "11/11" in capsys.readouterr().err


def test_apply_callable_trains_with_autodiff():
    r = train(NET.apply, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=3, gradient="autodiff")
    ref = train(NET, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=3)
    np.testing.assert_allclose(r.history.loss, ref.history.loss, rtol=1e-12)
    with pytest.raises(TypeError, match='use gradient="autodiff"'):
        train(NET.apply, "squared_error", P0, X, Y, optax.sgd(0.1), epochs=3)


def test_train_many_applies_the_same_checks():
    params = init_many(NET, jax.random.key(0), 2)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation"):
        train_many(NET, "squared_error", params, X, Y, 0.1, epochs=1)
    x = X.copy()
    x[0, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"^x holds 1 non-finite value \(the first, inf, at index \(0, 0\)\)"
    ):
        train_many(NET, "squared_error", params, x, Y, epochs=1)


def _cnn_problem(n=12):
    L = fb.layers
    net = fb.serial(
        L.Conv2D(3, (3, 3), padding="SAME"), L.Activation("tanh"), L.AvgPool2D((2, 2)),
        L.Residual(L.Conv2D(3, (3, 3), padding="SAME"), L.Activation("relu")), L.LayerNorm(),
        L.Flatten(), L.Dense(3), input_shape=(4, 4, 1),
    )  # fmt: skip
    kx, ky, kp = jax.random.split(jax.random.key(3), 3)
    return net, net.init(kp), jax.random.normal(kx, (n, 4, 4, 1)), jax.random.randint(ky, (n,), 0, 3)


@pytest.mark.slow  # make test-slow
@pytest.mark.parametrize("mode", ["minibatch"])
def test_a_cnn_trains_the_same_with_backprop_and_autodiff(mode):
    net, params, x, y = _cnn_problem()
    kw = dict(epochs=20, mode=mode, batch_size=4 if mode == "minibatch" else None, key=jax.random.key(1))
    a = train(net, "cross_entropy", params, x, y, optax.adam(0.02), gradient="backprop", **kw)
    b = train(net, "cross_entropy", params, x, y, optax.adam(0.02), gradient="autodiff", **kw)
    np.testing.assert_allclose(a.history.loss, b.history.loss, rtol=1e-10)
    assert float(a.history.loss[-1]) < 0.8 * float(a.history.loss[0])


@pytest.mark.slow  # make test-slow
def test_train_many_on_a_cnn_equals_sequential_runs():
    net, _, x, y = _cnn_problem()
    params = init_many(net, jax.random.key(0), 2)
    many = train_many(net, "cross_entropy", params, x, y, optax.sgd(0.3), epochs=10)
    for k in range(2):
        one = train(
            net, "cross_entropy", jax.tree.map(lambda l, k=k: l[k], params), x, y, optax.sgd(0.3), epochs=10
        )
        np.testing.assert_allclose(many.history.loss[k], one.history.loss, rtol=1e-10)
