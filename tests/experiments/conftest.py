"""Experiments are scripts in experiments/; their tests import them and run ``main`` in quick mode.

Every quick run takes its ``--seed`` from the ``seed`` fixture, one of ``FBACKPROP_SEEDS``
(tests/conftest.py; default ``0``): with ``FBACKPROP_SEEDS=0,1,2,3,4`` each experiment test that uses
``run_quick`` runs once per seed, so a claim that holds for one lucky seed only shows up as a failure
(test ids ``[seed3]``).

Every test that runs an experiment end to end (it takes ``run_quick``) is marked ``slow``: ``make
test-slow`` (and CI) runs them, ``make test`` keeps the experiments' other tests.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))


def pytest_collection_modifyitems(config, items):
    """Mark every end-to-end experiment run (a test taking ``run_quick``) ``slow``."""
    for item in items:
        if "run_quick" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def run_quick(tmp_path, seed):
    """``run_quick(module, *flags)``: run ``module.main`` with ``--quick --seed S --out tmp``, check
    that results.json and every figure were written and that every claim held; return the result."""

    def run(module, *flags):
        result = module.main(["--quick", "--seed", str(seed), "--out", str(tmp_path), *flags])
        on_disk = json.loads((tmp_path / "results.json").read_text())
        assert on_disk["claims"] == result["claims"] and result["claims"]
        failed = [claim for claim, held in result["claims"].items() if not held]
        assert not failed, f"claims that did not hold (seed {seed}): {failed}"
        for png in result["figures"].values():
            assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return result

    return run
