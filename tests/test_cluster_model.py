"""The cluster-scale model behind docs/scale.md: the page's tables are the script's output (so the
page never drifts from the model), and the model's figures follow its closed forms."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cluster_model as M  # noqa: E402

PAGE = ROOT / "docs" / "scale.md"


def test_the_page_holds_the_models_current_tables():
    page = PAGE.read_text()
    assert M.fill(page) == page, (
        "docs/scale.md is stale: python benchmarks/cluster_model.py --write docs/scale.md"
    )
    for name, text in M.sections().items():
        assert f"<!-- cluster_model: begin {name} -->\n{text}\n<!-- cluster_model: end {name} -->" in page


def test_accumulate_all_reduces_G_and_g_8e8_bytes_at_P_1e4_in_float64():
    c = M.lm_iteration("accumulate", 10**6, 10**4, 8)
    assert c.volume_bytes == 8e8 + 8e4  # G: P^2 floats, g: P floats, 8 bytes each
    assert c.comm_s == pytest.approx(2 * 7 / 8 * (8e8 + 8e4) / 400e9 + 10e-6, rel=1e-12)
    assert M.lm_iteration("dense", 10**6, 10**4, 64).volume_bytes == c.volume_bytes  # the same on any p


def test_cg_all_reduces_one_vector_per_product_and_the_gradient():
    for k in (0, 1, 100):
        c = M.lm_iteration("cg", 10**6, 10**5, 8, cg_iters=k)
        assert c.volume_bytes == (1 + k) * 10**5 * 8
        assert c.flops == pytest.approx(6 * 125_000 * 10**5 + k * 8 * 125_000 * 10**5 + 2 * 125_000 * 10**5)


def test_the_gram_and_the_cholesky_dominate_the_exact_solves_flops():
    N, P, p = 10**6, 10**4, 8
    c = M.lm_iteration("accumulate", N, P, p)
    gram, chol = 2 * (N / p) * P**2, P**3 / 3
    assert gram + chol < c.flops < 1.01 * (gram + chol)
    d = M.lm_iteration("dual, J Jᵀ", 10**4, 10**6, 8)
    assert d.flops > 2 * (10**4 / 8) * 10**4 * 10**6 + (10**4) ** 3 / 3  # K's rows and its Cholesky
    assert d.volume_bytes == 8 * (10**4 * 10**6 + 10**8 + 2 * 10**6)  # J, K, J^T w and g


def test_the_ring_collectives_and_one_device():
    assert M.all_reduce_s(1e9, 64) == pytest.approx(2 * 63 / 64 * 1e9 / 50e9 + 30e-6)
    assert M.all_gather_s(1e9, 8) == pytest.approx(7 / 8 * 1e9 / 400e9 + 10e-6)
    assert M.all_reduce_s(1e9, 1) == M.all_gather_s(1e9, 1) == 0.0


def test_memory_marks_what_does_not_fit():
    assert M.lm_iteration("accumulate", 10**6, 10**4, 8).fits
    assert not M.lm_iteration("accumulate", 10**6, 10**5, 64).fits  # G and its factor: 160 GB
    assert not M.lm_iteration("dual", 10**6, 10**4, 64).fits  # K: (10^6)^2 floats
    assert all(M.lm_iteration("cg", N, P, p).fits for N in M.ROWS for P in M.PARAMS for p in M.DEVICES)


@pytest.mark.parametrize("P", M.PARAMS)
def test_the_assumed_network_has_about_P_parameters(P):
    n_in, h, _, n_out = M.widths(P)
    assert abs(n_in * h + h + h * h + h + h * n_out + n_out - P) <= h + 20


def test_units_read_as_written():
    assert M.si(8e8, "B") == "800 MB" and M.si(0, "B") == "0 B" and M.si(1.6e13, "B") == "16 TB"
    assert M.seconds(3.5e-3) == "3.5 ms" and M.seconds(4.2e-5) == "42 us" and M.seconds(300) == "5 min"
    assert M.power(10**6) == "10⁶" and M.power(123) == "123"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.lm_iteration("qr", 10, 10, 1), "solver must be one of"),
        (lambda: M.first_order("adam", 10, 10, 1), "kind must be 'train step' or 'HVP'; got 'adam'"),
        (lambda: M.fill("no markers here"), "the page's generated sections are"),
    ],
    ids=["unknown solver", "unknown step", "page without sections"],
)
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_reports_a_stale_page(tmp_path):
    page = tmp_path / "scale.md"
    page.write_text(PAGE.read_text().replace("| dense | 10⁴ | 8 |", "| dense | 10⁴ | 9 |", 1))
    assert M.main(["--check", str(page)]) == 1
    assert M.main(["--write", str(page)]) == 0 and M.main(["--check", str(page)]) == 0
    assert page.read_text() == PAGE.read_text()


def test_the_largest_fitting_P_is_where_memory_crosses_80_GB():
    P = M.largest_fitting_P("accumulate", 10**4, 8)
    assert (
        M.lm_iteration("accumulate", 10**4, P, 8).fits
        and not M.lm_iteration("accumulate", 10**4, P + 1, 8).fits
    )
    assert 0.95 * (80e9 / 16) ** 0.5 < P < (80e9 / 16) ** 0.5  # G and its factor, 2 P^2 floats, fill it
    assert M.largest_fitting_P("dual", 10**6, 64) == 0  # K alone is 8 TB


def test_the_per_row_flop_counts_agree_with_xlas_count_of_fbackprops_programs():
    import jax
    import jax.numpy as jnp

    import fbackprop as fb

    n, net = 256, fb.mlp(list(M.widths(10**4)), activation="tanh")
    params = net.init(jax.random.key(0), jnp.float64)
    x, y = jnp.ones((n, M.N_IN)), jnp.zeros((n, M.N_OUT))

    def per_row_and_param(f, *args):
        cost = jax.jit(f).lower(*args).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"] / (n * net.n_params)

    forward = per_row_and_param(lambda p: net.apply(p, x), params)
    gradient = per_row_and_param(lambda p: fb.value_and_backprop(net, "squared_error")(p, x, y), params)
    hvp = per_row_and_param(lambda p, v: fb.hvp(net, "squared_error")(p, x, y, v), params, params)
    ggn_vp = per_row_and_param(lambda p, v: fb.ggn_vp(net, "squared_error")(p, x, y, v), params, params)
    assert forward == pytest.approx(2, rel=0.15)  # the trial's pass
    assert gradient == pytest.approx(6, rel=0.15)  # cg's linearisation, a training step
    assert hvp == pytest.approx(14, rel=0.15)
    assert ggn_vp - forward == pytest.approx(8, rel=0.15)  # a CG product past its cached forward pass
