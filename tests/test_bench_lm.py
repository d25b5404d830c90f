"""The Levenberg-Marquardt benchmark runs in quick mode (with the ``--gpu`` path at tiny sizes on
CPU): fbackprop's rows reach the target, their time to target is the first iteration at the target
in their own history, and each comparison library that is installed (scipy, optimistix, jaxopt:
the optional ``bench`` extra) has rows that reach the same target from the same start."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_lm  # noqa: E402
import lm_seeds  # noqa: E402

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_lm")
    bench_lm.main(["--quick", "--gpu", "--out", str(out)])
    return json.loads((out / "results.json").read_text()), (out / "table.txt").read_text()


def rows_of(result, library):
    return {p["problem"]: [r for r in p["rows"] if r["library"] == library] for p in result["problems"]}


def test_fbackprop_rows_reach_the_target_at_the_first_iteration_their_history_shows(quick):
    result, text = quick
    by_problem = rows_of(result, "fbackprop")
    assert set(by_problem) == {"parity3", "peaks"}
    for problem, rows in by_problem.items():
        assert len(rows) == 3 and sum(r["default"] for r in rows) == 1, problem
        assert any("auto→" in r["variant"] for r in rows if r["default"])
        assert sum("line search" in r["variant"] for r in rows) == 1, problem
        for r in rows:
            k, curve = r["iters_to_target"], r["sse_curve"]
            assert r["target_sse"] == pytest.approx(1e-3 * r["initial_sse"])
            assert k is not None and 0 < k <= r["iters"] == len(curve) - 1
            assert curve[0] == pytest.approx(r["initial_sse"], rel=1e-12)
            assert curve[k] <= r["target_sse"] * (1 + 1e-9) < min(curve[:k])
            assert all(b <= a for a, b in zip(curve, curve[1:]))  # the loss never rises
            assert r["final_sse"] == pytest.approx(curve[-1], rel=1e-9)
            assert r["time_to_target_s"] > 0 and r["s_per_iter"] > 0 and r["compile_s"] >= 0
            assert r["time_to_target_spread"][0] <= r["time_to_target_s"] <= r["time_to_target_spread"][1]
    for prob in result["problems"]:  # the floor of fbackprop's best row and its pieces
        fl = prob["floor"]
        assert fl["solver"] in ("dense", "dual") and 0 < fl["accepted_fraction"] <= 1
        assert fl["floor_s_per_iter"] > 0 and fl["ratio"] == pytest.approx(
            fl["s_per_iter"] / fl["floor_s_per_iter"]
        )
        assert all(v > 0 for v in fl["rates_gflop_per_s"].values())
        assert sum(fl["pieces"].values()) == pytest.approx(fl["floor_s_per_iter"])
        assert len(prob["profile"]) >= 6 and all(r["s"] > 0 for r in prob["profile"])
        assert any(f"{prob['problem']}: fbackprop's" in k and "the floor" in k for k in result["targets"])
    assert any(k.startswith("parity3: fbackprop's best time to target") for k in result["targets"])
    assert text.startswith("problem") and "[default]" in text and "measured rates" in text


def test_the_gpu_path_runs_every_solver_at_tiny_sizes(quick):
    result, text = quick
    gpu = result["gpu"]
    assert [(r["solver"], r["P"]) for r in gpu] == [
        ("dense", 300),
        ("accumulate", 300),
        ("cg", 1000),
        ("dual", 1000),
        ("cg", 3000),
    ]
    for r in gpu:
        assert "error" not in r, r
        assert abs(r["P_actual"] - r["P"]) <= 0.05 * r["P"] and r["N"] == 64
        assert r["ms_per_step"] > 0 and math.isfinite(r["loss_after"]) and r["loss_after"] <= r["loss_before"]
    assert "one LM call with max_steps=1" in text


@pytest.mark.parametrize("library", ["scipy", "optimistix", "jaxopt"])
def test_each_installed_library_reaches_the_same_target(quick, library):
    pytest.importorskip(library)
    result, _ = quick
    assert library in result["versions"]
    rows = rows_of(result, library)
    assert rows["peaks"] == []  # quick: fbackprop only on peaks
    parity = rows["parity3"]
    assert len(parity) == (2 if library == "scipy" else 1)
    fb_row = rows_of(result, "fbackprop")["parity3"][0]
    for r in parity:
        assert r["initial_sse"] == pytest.approx(fb_row["initial_sse"], rel=1e-12)  # the same start
        assert r["iters_to_target"] is not None and r["time_to_target_s"] > 0, r["variant"]
        assert r["final_sse"] <= r["target_sse"] and r["s_per_iter"] > 0
    if library == "scipy":
        assert all("8 zero residuals" in r["note"] for r in parity)  # M = 8 < P = 16, padded for MINPACK


def test_the_seed_table_counts_both_variants_on_every_seed(tmp_path):
    rows = lm_seeds.main(["--seeds", "2", "--problems", "parity3", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == 2 and [r["damping"] for r in saved["rows"]] == ["marquardt", "nielsen"]
    for r in saved["rows"]:
        for label in lm_seeds.VARIANTS:
            assert len(r[label]) == 2 and all(c is None or 0 < c <= r["budget"] for c in r[label])
            assert r[f"median {label}"] > 0
    assert rows == saved["rows"]
