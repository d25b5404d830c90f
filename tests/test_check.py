"""compare(): per-leaf errors, overall max_rel, cosine, the table, tolerances per dtype."""

import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb

A = ({"W": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([1.0, -1.0])},)


def test_identical_trees():
    r = fb.compare(A, A)
    assert r.max_rel == 0.0 and r.max_abs == 0.0 and r.min_cosine == pytest.approx(1.0) and r.ok()


def test_errors_per_leaf():
    B = ({"W": A[0]["W"].at[1, 1].add(4e-3), "b": A[0]["b"]},)
    r = fb.compare(B, A)
    assert [l.name for l in r.leaves] == ["layer 1 W", "layer 1 b"]
    w = r.leaves[0]
    assert w.max_abs == pytest.approx(4e-3) and w.max_rel == pytest.approx(4e-3 / 4.004)
    assert r.leaves[1].max_rel == 0.0 and r.max_rel == w.max_rel
    assert 0.99 < w.cosine < 1.0
    assert not r.ok() and r.ok(tol=1e-2)


def test_table_and_verdict():
    text = str(fb.compare(A, A))
    assert "layer 1 W" in text and "2x2" in text and "max rel err" in text and "ok" in text
    B = ({"W": -A[0]["W"], "b": A[0]["b"]},)
    text = str(fb.compare(B, A))
    assert "MISMATCH" in text and "-1.000000000000" in text  # opposite direction: cosine -1


def test_nan_is_never_ok():
    B = ({"W": A[0]["W"].at[0, 0].set(jnp.nan), "b": A[0]["b"]},)
    assert not fb.compare(B, A).ok(tol=1.0)


def test_structure_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in structure"):
        fb.compare(A, A[0])
    with pytest.raises(ValueError, match="shapes"):
        fb.compare(({"W": jnp.ones((2, 3)), "b": A[0]["b"]},), A)


def test_tolerances_per_dtype():
    assert fb.tolerance(jnp.float64) == 1e-10
    assert fb.tolerance(jnp.float32) > fb.tolerance(jnp.float64)
    assert fb.tolerance(jnp.float64, finite_differences=True) == 1e-6
    r32 = fb.compare(tuple({k: v.astype(np.float32) for k, v in A[0].items()} for _ in [0]), A)
    assert r32.dtype == "float32"


def test_a_leaf_that_is_zero_up_to_rounding_is_judged_against_the_whole_tree():
    """Bias gradients ~1e-17 (a symmetric problem) off by 7e-16: rounding, not a mismatch; but a
    small leaf that is genuinely wrong is still caught."""
    ref = ({"W": np.array([[0.3, -0.2]]), "b": np.array([1e-17])},)
    rounding = ({"W": np.array([[0.3, -0.2]]), "b": np.array([7e-16])},)
    assert fb.compare(rounding, ref).ok()
    wrong = ({"W": np.array([[0.3, -0.2]]), "b": np.array([2e-4])},)
    assert not fb.compare(wrong, ({"W": np.array([[0.3, -0.2]]), "b": np.array([1e-4])},)).ok()


def _fd_problem():
    import jax

    net = fb.mlp([3, 6, 2], activation="tanh")
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jax.random.normal(jax.random.key(2), (8, 2))
    return fb.numerical_grad(net, "squared_error")(params, x, y), fb.backprop(net, "squared_error")(
        params, x, y
    )


def test_a_correct_finite_difference_gradient_is_judged_by_its_method():
    fd, exact = _fd_problem()
    exact_method = fb.compare(fd, exact)
    assert 1e-12 < exact_method.max_rel < 1e-7  # O(h^2) + rounding: far above 1e-10, far below 1e-6
    assert not exact_method.ok() and "MISMATCH" in str(exact_method)
    report = fb.compare(fd, exact, method="finite_difference")
    assert report.ok() and report.tolerance == fb.tolerance(jnp.float64, finite_differences=True) == 1e-6
    assert report.method == "finite_difference" and report.rtol is None
    assert "tolerance 1e-06, finite_difference method, float64: ok" in str(report)
    assert fb.compare(fd, exact, method="numerical_grad").ok()


def test_rtol_overrides_and_the_table_says_so():
    fd, exact = _fd_problem()
    report = fb.compare(fd, exact, rtol=1e-3)
    assert report.ok() and report.tolerance == 1e-3 and "tolerance 1e-03, rtol: ok" in str(report)
    assert not fb.compare(fd, exact, rtol=1e-14).ok()
    assert report.ok(tol=1e-14) is False  # ok(tol) still overrides both


def test_tolerance_takes_dtype_names_and_refuses_others():
    assert fb.tolerance("float32") == fb.tolerance(np.float32) == 1e-4
    with pytest.raises(ValueError, match=r"tolerance: dtype must be one of the floating dtypes \['float64'"):
        fb.tolerance(jnp.int32)
