"""Experiments are scripts in experiments/; their tests import them and run ``main`` in quick mode."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))


@pytest.fixture
def run_quick(tmp_path):
    """``run_quick(module, *flags)``: run ``module.main`` with ``--quick --out tmp``, check that
    results.json and every figure were written and that every claim held; return the result."""

    def run(module, *flags):
        result = module.main(["--quick", "--out", str(tmp_path), *flags])
        on_disk = json.loads((tmp_path / "results.json").read_text())
        assert on_disk["claims"] == result["claims"] and result["claims"]
        failed = [claim for claim, held in result["claims"].items() if not held]
        assert not failed, f"claims that did not hold: {failed}"
        for png in result["figures"].values():
            assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return result

    return run
