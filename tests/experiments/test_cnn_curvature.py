"""experiments/cnn_curvature.py: a CNN's exact Hessian diagonal, blocks and top eigenvalues by
second-order backprop against autodiff, and the exact diagonal against P HVPs in time."""

import cnn_curvature as cc
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_cnn_curvature_quick(run_quick):
    result = run_quick(cc)
    m = result["metrics"]
    assert m["P"] == cc.network(4).n_params == sum(m["leaf_sizes"]) and m["n"] == 16
    assert len(m["rows"]) == 2  # --quick: two parameter draws
    assert m["names"][0] == "layer 1 Conv2D W" and "Residual > 1 Conv2D" in m["names"][2]
    for row in m["rows"]:
        assert len(row["blocks_vs_autodiff"]) == 3  # conv, the residual block's conv, dense
        assert row["exact_s"] > 0 and row["hvps_s"] > 0
    assert set(result["figures"]) == {"diagonal", "eigenvalues"}


def test_block_offsets_follow_flatten_order():
    net = cc.network(2)
    params = cc.draw_params(net, __import__("jax").random.key(0))
    offsets = cc.block_offsets(params)
    assert offsets[0][0] == 0 and offsets[-1][1] == net.n_params
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
    assert cc.leaf_names(net, params)[-2:] == ["layer 7 Dense W", "layer 7 Dense b"]


def passing_row(k=3):
    return {
        "hessian_diag_vs_autodiff": 1e-15,
        "ggn_diag_vs_autodiff": 1e-15,
        "blocks_vs_autodiff": [1e-15, 1e-15, 1e-15],
        "blocks_diag_vs_hessian_diag": 0.0,
        "hvp_vs_dense": 1e-15,
        "hvps_diag_vs_exact": 1e-15,
        "ggn_diag_min_over_max": 0.0,
        "hessian_diag_negative": 5,
        "top_rel_err": np.full(k, 1e-14),
        "bottom_err_over_max": 1e-12,
        "bottom_dense": -1.0,
        "speedup": 2.0,
    }


def test_claims_read_the_rows_and_can_fail():
    r = {"k": 3, "rows": [passing_row(), passing_row()]}
    assert all(cc.claims(r).values())
    breaks = {
        "hessian_diag_vs_autodiff": (1e-8, "fb.hessian_diag equals"),
        "ggn_diag_vs_autodiff": (1e-8, "fb.ggn_diag equals"),
        "blocks_vs_autodiff": ([1e-15, 1e-6, 1e-15], "fb.hessian_blocks equals"),
        "hvp_vs_dense": (1e-9, "H v of the dense"),
        "hvps_diag_vs_exact": (1e-9, "from P HVPs"),
        "ggn_diag_min_over_max": (-1e-3, "non-negative"),
        "hessian_diag_negative": (0, "non-negative"),
        "top_rel_err": (np.array([1e-14, 1e-3, 1e-14]), "Lanczos Ritz values"),
        "bottom_dense": (0.5, "indefinite"),
        "speedup": (1.2, "faster than P HVPs"),
    }
    for field, (value, phrase) in breaks.items():
        bad = passing_row()
        bad[field] = value
        failed = [c for c, held in cc.claims({"k": 3, "rows": [passing_row(), bad]}).items() if not held]
        assert len(failed) == 1 and phrase in failed[0], (field, failed)
    assert not all(cc.claims({"k": 3, "rows": []}).values())
