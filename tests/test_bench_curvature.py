"""The curvature benchmark runs in quick mode: ratios recorded, the three Hessian diagonals agree,
and both the whole-basis and the extrapolated ("est.") timings of the diagonal are exercised."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_curvature  # noqa: E402
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_bench_curvature_quick(tmp_path, capsys):
    bench_curvature.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    products = result["products"]
    ratios = products["ratios"]
    for name in (
        "hvp_autodiff_over_grad",
        "hvp_backprop_over_grad",
        "ggn_vp_over_grad",
        "value_and_backprop_over_grad",
        "autodiff_over_grad",
    ):
        assert math.isfinite(ratios[name]) and ratios[name] > 0
    assert products["hvp_methods_max_rel"] <= 1e-5  # the two HVPs are the same H v
    rows = {r["name"]: r for r in products["rows"]}
    assert all(r["core_s"] > 0 for r in rows.values())
    if rows["jax.grad"]["flops"]:  # XLA counted: an HVP costs more than a gradient
        assert rows["hvp autodiff"]["flop_ratio_over_grad"] > rows["ggn_vp"]["flop_ratio_over_grad"] > 1
    diagonal = result["diagonal"]
    assert len(diagonal) == 2
    for row in diagonal:
        assert (
            row["agree"] and max(row["max_rel_vs_dense"], row["max_rel_vs_hvps"]) <= row["tolerance"] == 1e-5
        )
        assert row["speedup_over_hvps"] > 0 and row["speedup_over_dense"] > 0
    assert not diagonal[0]["hvps_estimated"] and diagonal[0]["entries_compared_hvps"] == diagonal[0]["P"]
    assert diagonal[1]["hvps_estimated"] and diagonal[1]["entries_compared_hvps"] < diagonal[1]["P"]
    assert any("three diagonals agree" in claim and held for claim, held in result["targets"].items())
    out = capsys.readouterr().out
    assert "est." in out and "targets (cpu)" in out
    assert (tmp_path / "table.txt").read_text().startswith("products:")
