"""The multi-process benchmark runs in quick mode: 1, 2 and 4 processes under ``fbackprop.launch``,
a table of every quantity x process count whose ratios to one process are finite and positive, and
the same values computed by every process count (the sums are only reassociated)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_distributed  # noqa: E402

pytestmark = pytest.mark.slow  # seven processes, each importing JAX and compiling four programs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_distributed")
    bench_distributed.main(["--quick", "--out", str(out)])
    return json.loads((out / "results.json").read_text()), (out / "table.txt").read_text()


def test_every_quantity_has_a_row_per_process_count_with_a_finite_positive_ratio(quick):
    result, _ = quick
    rows = result["rows"]
    assert [(r["quantity"], r["processes"]) for r in rows] == [
        (q, k) for q in bench_distributed.QUANTITIES for k in (1, 2, 4)
    ]
    for r in rows:
        assert math.isfinite(r["median_s"]) and r["median_s"] > 0, r
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        assert r["compile_s"] >= 0, r
        if r["processes"] == 1:
            assert r["ratio"] == 1.0 and r["all_reduce_ops"] == 0  # one device: nothing to sum across
        else:
            assert r["all_reduce_ops"] >= 1, r  # every quantity sums over the rows of every process
    assert [run["processes"] for run in result["runs"]] == [1, 2, 4]
    assert [run["devices"] for run in result["runs"]] == [1, 2, 4]  # one CPU device per process


def test_every_process_count_computes_the_same_values(quick):
    result, _ = quick
    for r in result["rows"]:
        assert math.isfinite(r["value"]) and r["value_rel"] <= bench_distributed.VALUE_RTOL, r


def test_the_table_names_every_quantity_and_says_what_it_measures(quick):
    _, text = quick
    lines = text.splitlines()
    assert lines[0].startswith("quantity") and "4 proc s" in lines[0]
    for q in bench_distributed.QUANTITIES:
        assert sum(line.startswith(q) for line in lines) == 1, q
    assert "not a speed-up" in text and "P = 37" in text


def test_the_table_rows_read_back_the_ratios():
    runs = [
        {
            "processes": k,
            "median_s": dict.fromkeys(bench_distributed.QUANTITIES, 0.5 * k),
            "compile_s": dict.fromkeys(bench_distributed.QUANTITIES, 1.0),
            "values": dict.fromkeys(bench_distributed.QUANTITIES, 2.0),
        }
        for k in (1, 2, 4)
    ]
    rows = bench_distributed.rows_of(runs)
    assert [r["ratio"] for r in rows if r["quantity"] == "HVP"] == [1.0, 2.0, 4.0]
    assert all(r["value_rel"] == 0.0 for r in rows)
    assert " 4.00" in bench_distributed.table(rows, [1, 2, 4]).splitlines()[2]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--processes", "2,4"], "--processes must start with 1"),
        (["--processes", "1,3", "--rows", "64"], r"each count divide --rows 64; got \[1, 3\]"),
        (["--processes", "1,two"], "--processes must be comma-separated integers; got '1,two'"),
        (["--rounds", "0"], "--rounds must be >= 1; got 0"),
        (["--cg-iters", "-1"], "--cg-iters must be >= 1; got -1"),
        (["--sizes", "2,30,2"], "--sizes must be >= 2 positive layer sizes ending in 1"),
        (["--sizes", "2,x,1"], "--sizes must be comma-separated integers"),
    ],
    ids=[
        "no single process",
        "uneven split",
        "not integers",
        "no rounds",
        "negative CG",
        "two outputs",
        "bad sizes",
    ],
)
def test_bad_options_are_refused_before_any_process_starts(argv, match):
    with pytest.raises(ValueError, match=match):
        bench_distributed.main(argv)


def test_the_prepared_gpu_script_parses():
    script = Path(__file__).parent.parent / "benchmarks" / "gpu_figures.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
