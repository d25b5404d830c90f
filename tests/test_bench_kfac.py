"""The K-FAC benchmark runs in quick mode: every variant timed, the ratios finite and positive, the
factors of the two libraries agreeing after the scaling, and without kfac-jax the fbackprop rows alone."""

import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_kfac  # noqa: E402
import kfac_entries  # noqa: E402

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
        _check_ratios(row["ratios"])  # every fbackprop step against the first (SGD), and against kfac-jax's
        assert any("kfac-jax" in q for q in row["ratios"]) == with_kfac_jax
    assert result["versions"]["kfac_jax"] == (
        bench_kfac.import_kfac_jax().__version__ if with_kfac_jax else None
    )


def _plain_adam():
    """optax.adam as a plain ``GradientTransformation`` (its update takes no extra arguments)."""
    t = optax.adam(1e-3)
    return optax.GradientTransformation(t.init, lambda u, state, params=None: t.update(u, state, params))


@pytest.mark.skipif(not HAVE_KFAC_JAX, reason="kfac-jax is not installed (pip install -e '.[bench]')")
def test_bench_kfac_quick(tmp_path, capsys, monkeypatch):
    """Also a second fbackprop step (a plain transformation, wrapped): its ratios to kfac-jax's steps."""
    monkeypatch.setitem(bench_kfac.FBACKPROP_STEPS, "fb + adam", lambda net, loss: _plain_adam())
    bench_kfac.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    _check(result, with_kfac_jax=True)
    assert result["factors_agree"] is True
    for row in result["steps"]:
        assert sum(q.startswith("fb + adam / kfac-jax") for q in row["ratios"]) == 2
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


def test_fbackprop_step_hands_the_batch_to_the_transformation():
    """``update(g, state, params, x=x, y=y)``: a curvature-based transformation can read the batch."""
    seen = {}

    def update(g, state, params=None, **extra):
        seen.update(extra)
        return jax.tree.map(jnp.zeros_like, g), state

    net = bench_kfac.digits_mlp((4, 3, bench_kfac.CLASSES))
    params, x, labels = bench_kfac.problem(net, 5)
    init, step = kfac_entries.fbackprop_step(
        net, "cross_entropy", optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    )
    new, _, C = step(params, init(params), x, labels)
    assert seen["x"] is x and seen["y"] is labels and float(C) > 0
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))
