"""The CNN benchmark runs in quick mode: both train steps timed and agreeing, both routes to the
Hessian diagonal timed (the P HVPs extrapolated from one block, "est.") and agreeing, the targets
recorded."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_cnn  # noqa: E402
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_bench_cnn_quick(tmp_path, capsys):
    bench_cnn.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    (step,) = result["steps"]
    assert step["hand_written_s"] > 0 and step["jax_grad_s"] > 0 and math.isfinite(step["ratio"])
    assert step["max_rel_params"] <= bench_cnn.AGREE_TOL  # the same Adam step both ways
    assert [r["net"] for r in result["diagonal"]] == ["conv", "lenet"]
    for row in result["diagonal"]:
        assert row["hvps_estimated"] and row["hvps_timed_entries"] < row["P"]  # --quick: est. exercised
        assert row["max_rel"] <= bench_cnn.AGREE_TOL and row["speedup"] > 0
        assert row["P"] == bench_cnn.cnn(row["input_shape"], row["channels"], row["hidden"]).n_params
    targets = result["targets"]
    assert any("the two diagonals agree" in claim and held for claim, held in targets.items())
    assert any("train step hand-written / jax.grad" in claim for claim in targets)
    out = capsys.readouterr().out
    assert "est." in out and "targets (cpu)" in out
    assert (tmp_path / "table.txt").read_text().startswith("train step:")
