"""The K-FAC benchmark runs in quick mode: every variant timed, the ratios finite and positive, the
factors of the two libraries agreeing after the scaling, and without kfac-jax the fbackprop rows alone."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_kfac  # noqa: E402

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget

HAVE_KFAC_JAX = bench_kfac.import_kfac_jax() is not None


def _check_ratios(ratios: dict):
    assert ratios
    for name, r in ratios.items():
        lo, hi = r["spread"]
        assert all(math.isfinite(v) and v > 0 for v in (r["median"], lo, hi)), name
        assert lo <= r["median"] <= hi, name


def _check(result: dict, with_kfac_jax: bool):
    assert [r["net"] for r in result["factors"]] == [r["net"] for r in result["steps"]] == ["mlp", "cnn"]
    for row in result["factors"]:
        names = {"gradient", "fb exact", "fb empirical"}
        if with_kfac_jax:
            names |= {f"kfac-jax {m}" for m in bench_kfac.KINDS.values()}
        assert set(row["times_s"]) == names and all(t > 0 for t in row["times_s"].values())
        _check_ratios(row["ratios"])
        assert ("fb exact / kfac-jax ggn_exact" in row["ratios"]) == with_kfac_jax
        if with_kfac_jax:
            assert set(row["max_rel"]) == set(bench_kfac.KINDS)
            assert all(v <= bench_kfac.AGREE_TOL for v in row["max_rel"].values())
        else:
            assert row["max_rel"] == {}
    for row in result["steps"]:
        kj = [k for k in row["times_s"] if k.startswith("kfac-jax")]
        assert list(row["times_s"])[: len(bench_kfac.FBACKPROP_STEPS)] == list(bench_kfac.FBACKPROP_STEPS)
        assert len(kj) == (len(bench_kfac.INVERSE_PERIODS) if with_kfac_jax else 0)  # --quick: one mode
        assert all(t > 0 for t in row["times_s"].values())
        if with_kfac_jax:
            _check_ratios(row["ratios"])
        else:
            assert row["ratios"] == {}
    assert result["versions"]["kfac_jax"] == (
        bench_kfac.import_kfac_jax().__version__ if with_kfac_jax else None
    )


@pytest.mark.skipif(not HAVE_KFAC_JAX, reason="kfac-jax is not installed (pip install -e '.[bench]')")
def test_bench_kfac_quick(tmp_path, capsys):
    bench_kfac.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    _check(result, with_kfac_jax=True)
    assert result["factors_agree"] is True
    table = (tmp_path / "table.txt").read_text()
    assert table.startswith("factors:") and "training step" in table and "kfac-jax ggn_exact" in table
    assert "factors agree after scaling" in capsys.readouterr().out


def test_bench_kfac_quick_without_kfac_jax(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_kfac, "import_kfac_jax", lambda: None)
    bench_kfac.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    _check(result, with_kfac_jax=False)
    assert result["factors_agree"] is None
    assert "kfac-jax is not installed" in capsys.readouterr().out
    assert "kfac-jax" not in (tmp_path / "table.txt").read_text().split("\n\n")[1]  # no kfac-jax step rows
