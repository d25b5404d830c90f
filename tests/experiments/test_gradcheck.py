"""experiments/gradcheck.py: backprop vs jax.grad vs forward mode vs central differences, float32 and
float64."""

import gradcheck
import numpy as np

import fbackprop as fb


def test_gradcheck_quick(run_quick):
    result = run_quick(gradcheck)
    rows = result["metrics"]["rows"]
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    assert [sum(c.startswith(dt) for c in result["claims"]) for dt in ("float32", "float64")] == [3, 3]
    worst = result["metrics"]["worst"]
    # float32 really ran in float32: its rounding errors sit far above float64's
    assert worst["float32"]["backprop_vs_autodiff"] > 1e-9 > worst["float64"]["backprop_vs_autodiff"]
    assert worst["float32"]["fd_vs_autodiff"] > 1e-6 > worst["float64"]["fd_vs_autodiff"]
    assert "heatmap" in result["figures"]


def test_matrix_covers_every_activation_loss_and_dtype():
    full, quick = gradcheck.networks(False), gradcheck.networks(True)
    columns = {(loss, dt) for loss in gradcheck.LOSSES for dt in gradcheck.DTYPES}
    assert len(full) == 2 * len(gradcheck.cases())
    assert {(loss, dt) for _, _, loss, dt in full} == columns == {(loss, dt) for _, _, loss, dt in quick}
    assert {h[0] for _, h, _, _ in quick} >= set(gradcheck.ACTIVATIONS)
    assert set(quick) <= set(full) and len(quick) >= 13
    assert {len(h) for _, h, _, _ in full} == {1, 2, 3, 5}


def test_tolerances_are_per_dtype():
    row = gradcheck.Row(
        ("tanh", "tanh"), "squared_error", "float64", (4, 5, 5, 3), 73, 1e-8, 1e-16, 1e-9, 1.0
    )
    assert not row.ok  # 1e-8 is a bug in float64 ...
    assert row._replace(dtype="float32").ok  # ... and rounding in float32
    assert not row._replace(dtype="float32", forward_vs_autodiff=1e-3).ok
    assert not row._replace(dtype="float32", fd_vs_autodiff=0.1).ok
    assert gradcheck.exact_tol("float32") == fb.tolerance("float32")
    assert gradcheck.fd_tol("float64") == fb.tolerance("float64", finite_differences=True)


def test_draw_keeps_preactivations_away_from_kinks():
    # only jumps of f' spoil a central difference of C: relu's and leaky_relu's, not elu's (f'' only)
    assert gradcheck.df_kinks("relu") == gradcheck.df_kinks("leaky_relu") == (0.0,)
    assert gradcheck.df_kinks("elu") == gradcheck.df_kinks("tanh") == ()
    i = gradcheck.cases().index((("relu", "relu"), "squared_error"))
    params, x, y = gradcheck.draw([(i, ("relu", "relu"), "squared_error", "float32")], seed=0)[i]
    net = fb.mlp(gradcheck.sizes_of(("relu", "relu")), activation="relu")
    trace = fb.backprop_trace(net, "squared_error")(params, x, y)
    hidden_z = np.concatenate([np.ravel(z) for z in trace.z[:2]])
    assert np.abs(hidden_z).min() >= gradcheck.KINK_MARGIN
    # the filter is not vacuous: plain Gaussian rows do come near the kink
    pool = 1.5 * np.random.default_rng(0).standard_normal((64, x.shape[1]))
    assert not gradcheck.kink_free(("relu", "relu"), params, pool).all()
    # float32 and float64 checks of a case see the same draw
    again = gradcheck.draw([(i, ("relu", "relu"), "squared_error", "float64")], seed=0)[i]
    np.testing.assert_array_equal(again[1], x)


def test_heatmap_grid_places_each_network():
    rows = [
        gradcheck.Row(("gelu", "gelu"), "cross_entropy", "float32", (4, 5, 5, 3), 73, 3e-7, 2e-7, 1e-4, 1.0),
        gradcheck.Row(("tanh",), "squared_error", "float64", (4, 5, 3), 43, 2e-16, 3e-16, 1e-9, 1.0),
    ]
    labels, columns, errors = gradcheck.grid(rows, "vs_autodiff")
    assert errors.shape == (len(gradcheck.ACTIVATIONS) + len(gradcheck.DEPTHS), 6)
    assert errors[labels.index("gelu"), columns.index(("float32", "cross_entropy"))] == 3e-7
    assert errors[labels.index("depth 1: tanh"), columns.index(("float64", "squared_error"))] == 2e-16
    assert np.isnan(errors).sum() == errors.size - 2
