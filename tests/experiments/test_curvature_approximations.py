"""experiments/curvature_approximations.py: K-FAC's, EKFAC's, the diagonal GGN's, the empirical
Fisher's and Hessian-free's directions and matrices against the exact damped GGN's, along Adam runs."""

import curvature_approximations as ca
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_curvature_approximations_quick(run_quick):
    result = run_quick(ca)
    m = result["metrics"]
    assert set(m["networks"]) == {"mlp"}  # --quick: the MLP only
    mlp = m["networks"]["mlp"]
    assert mlp["P"] == ca.mlp(8).n_params and m["n"] == 64
    assert len(mlp["runs"]) == 3 and all(len(run) == len(m["steps"]) == 3 for run in mlp["runs"])
    row = mlp["runs"][0][0]
    assert set(row["cosine"]) == set(ca.directions((10, 50))) and set(row["frobenius"]) == set(ca.MATRICES)
    assert row["lam"] == pytest.approx(0.01 * row["trace_over_P"], rel=1e-12)
    assert all(0 <= w["g_on_top_k"] <= 1 + 1e-12 for run in mlp["runs"] for w in run)
    assert m["dampings"] == [0.01, 0.1] and len(row["sweep"]) == 2 and row["sweep"][0] == row["cosine"]
    assert set(result["figures"]) == {"cosines", "matrix_errors", "damping"}


def _tiny(sizes, n, seed=0):
    net = fb.mlp(sizes, activation="tanh")
    key = jax.random.key(seed)
    params = net.init(key, jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (n, sizes[0]), jnp.float64)
    y = jax.random.randint(jax.random.fold_in(key, 2), (n,), 0, sizes[-1])
    return net, params, x, y


def _measured(net, params, x, y, cg=(3,), damping=0.1, k=3):
    m = jax.device_get(ca.measure(net, cg)(params, x, y, jnp.asarray([damping]), jax.random.key(7)))
    return m, ca.checkpoint(m, ca.layer_slices(params), k, cg)


def test_one_example_kfac_and_ekfac_matrices_are_the_ggn_blocks():
    """N = 1, kind="exact": kron(G_l, A_l) is layer l's GGN block, so the dense K-FAC and EKFAC
    matrices (built here, permuted to fb.flatten's order) equal the exact blocks of fb.ggn."""
    net, params, x, y = _tiny([3, 4, 5], n=1)
    m, row = _measured(net, params, x, y)
    slices = ca.layer_slices(params)
    blocks = ca.exact_blocks(np.asarray(m["G"]), slices)
    for M in (ca.kfac_matrix(m["kfac_factors"], slices), ca.ekfac_matrix(m["ekfac_factors"], slices)):
        assert np.max(np.abs(M - blocks)) <= 1e-12 * np.max(np.abs(blocks))
    assert row["frobenius"]["kfac"] == pytest.approx(row["frobenius"]["blocks"], rel=1e-10)
    assert row["frobenius"]["blocks"] > 0.05  # the cross-layer blocks are what is left out


def test_one_layer_blocks_are_g_and_p_cg_steps_reach_the_exact_direction():
    """One layer: the exact blocks are G (error 0, cosine 1); P CG steps solve (G + lam I) d = g."""
    net, params, x, y = _tiny([3, 4], n=6)
    P = net.n_params
    _, row = _measured(net, params, x, y, cg=(1, P))
    assert row["frobenius"]["blocks"] == 0.0 and row["cosine"]["blocks"] == pytest.approx(1.0, abs=1e-12)
    assert row["cosine"][f"cg{P}"] == pytest.approx(1.0, abs=1e-10)
    assert row["cosine"]["cg1"] == pytest.approx(row["cosine"]["gradient"], abs=1e-12)  # one step: along g
    assert row["frobenius"]["ekfac"] <= row["frobenius"]["kfac"] + 1e-12


def test_wb_order_is_flatten_order_inside_w_b():
    order = ca.wb_order((2, 3))  # [W | b] is 2 x 4: W row 0 -> 0, 1, 2; W row 1 -> 4, 5, 6; b -> 3, 7
    assert order.tolist() == [0, 1, 2, 4, 5, 6, 3, 7]
    conv = ca.wb_order((2, 3, 3, 1))  # a Conv2D W: 9 entries a row
    assert sorted(conv.tolist()) == list(range(20)) and conv[-2:].tolist() == [9, 19]


def _row(last: bool):
    """A checkpoint row (the first or the last) for which every claim holds."""
    cos = {"gradient": 0.4, "diag": 0.5, "efisher": 0.5, "kfac": 0.75, "ekfac": 0.8, "blocks": 0.85}
    cos.update(cg10=0.6, cg50=0.95)
    frob = {"diag": 0.98, "efisher": 0.5, "kfac": 0.6, "ekfac": 0.59, "blocks": 0.5}
    if last:
        cos["gradient"], frob["efisher"] = 0.9, 0.95
    checks = dict.fromkeys(
        (
            "kfac_matrix_vs_kfac_vp",
            "ekfac_matrix_vs_ekfac_vp",
            "ggn_vs_ggn_vp",
            "ggn_vs_ggn_diag",
            "per_example_mean_vs_backprop",
        ),
        1e-15,
    )
    return {
        "cosine": cos,
        "sweep": [cos, dict(cos)],
        "frobenius": frob,
        "top_k": dict(frob),
        "checks": checks,
        "loss": 0.1 if last else 1.0,
        "accuracy": 0.99 if last else 0.1,
    }


def _result(runs):
    return {"cg": [10, 50], "networks": {"mlp": {"P": 10, "runs": runs}}}


def _passing():
    return [[_row(False), _row(True)] for _ in range(3)]


BREAKS = [  # (checkpoint, field, name, value, seeds broken, phrase of the one claim that fails)
    (1, "checks", "ekfac_matrix_vs_ekfac_vp", 1e-6, 1, "reproduce fb.kfac_vp"),
    (0, "checks", "ggn_vs_ggn_diag", 1e-6, 1, "fb.ggn_diag"),
    (1, "frobenius", "ekfac", 0.61, 1, "EKFAC's Frobenius error <= K-FAC's"),
    (0, "frobenius", "blocks", 0.7, 1, "the exact blocks' Frobenius"),
    (1, "cosine", "gradient", 1.01, 1, "[-1, 1]"),
    (1, "cosine", "cg10", 0.97, 2, "rises with the CG steps"),
    (0, "cosine", "cg50", 0.86, 2, "CG steps reach a cosine"),
    (0, "cosine", "diag", 0.7, 2, "at the first checkpoint"),
    (0, "cosine", "blocks", 0.78, 2, "at the first checkpoint"),
    (1, "cosine", "gradient", 0.84, 2, "at the last checkpoint"),
    (1, "frobenius", "diag", 0.65, 2, "below the diagonal GGN's"),
    (1, "frobenius", "efisher", 0.85, 2, "empirical Fisher's Frobenius error rises"),
    (1, "loss", None, 0.5, 2, "lowers the training loss"),
]


@pytest.mark.parametrize("j, field, name, value, seeds, phrase", BREAKS, ids=[b[-1][:24] for b in BREAKS])
def test_claims_read_the_rows_and_can_fail(j, field, name, value, seeds, phrase):
    assert all(ca.claims(_result(_passing())).values())

    def broken(n_seeds):
        runs = _passing()
        for run in runs[:n_seeds]:
            if name is None:
                run[j][field] = value
            else:
                run[j][field][name] = value
            if field == "cosine":
                run[j]["sweep"][0] = run[j]["cosine"]
        return [c for c, held in ca.claims(_result(runs)).items() if not held]

    failed = broken(seeds)
    assert len(failed) == 1 and phrase in failed[0], failed
    if seeds == 2:  # a median over 3 seeds: one seed alone does not break it
        assert broken(1) == []


def test_claims_fail_without_runs():
    assert not all(ca.claims({"cg": [10, 50], "networks": {}}).values())


BAD_FLAGS = [
    (["--n", "1"], "--n must be"),
    (["--hidden", "0"], "--hidden must be"),
    (["--channels", "4"], "--channels must be two"),
    (["--steps", "0,30,10"], "--steps must be"),
    (["--steps", "30"], "--steps must be"),
    (["--steps", "0,x"], "--steps must be comma-separated ints"),
    (["--cg", "10"], "--cg must be"),
    (["--cg", "0,10"], "--cg must be"),
    (["--lr", "0"], "--lr must be"),
    (["--damping", "-1"], "--damping must be"),
    (["--sweep", "0.1,0"], "--sweep must be"),
    (["--k", "0"], "--k must be"),
    (["--k", "100000"], "--k must be"),
    (["--seeds", "0"], "--seeds must be"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_options_are_refused_before_anything_runs(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        ca.main(["--out", str(tmp_path), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
