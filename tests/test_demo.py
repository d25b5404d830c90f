"""The main job in quick mode, on two experiments of its tour (each experiment of the tour has its own
quick test in tests/experiments/): every claim held, REPORT.md whole, a crash reported as a claim.

The demo's experiment processes run under the compiler flags a user gets from ``make demo``:
``XLA_FLAGS``, which tests/conftest.py sets for the suite's speed, is removed from their environment.
Report files are written with the user's umask (a colleague can read them), not a temporary file's 0600.
"""

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import demo  # noqa: E402

TWO = ["gradcheck", "seed_example"]


@pytest.mark.slow  # make test-slow (make demo runs the whole tour)
def test_demo_quick_writes_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the experiment processes inherit this environment
    assert demo.main(["--quick", "--out", str(tmp_path), "--experiments", ",".join(TWO)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["claims"] and all(result["claims"].values())
    report = (tmp_path / "REPORT.md").read_text()
    for name in TWO:
        assert f"## {name}: " in report
        assert json.loads((tmp_path / name / "results.json").read_text())["experiment"] == name
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(images) >= len(TWO)
    assert "| backprop vs jax.grad |" in report.split("## gradcheck")[1]  # gradcheck's table.md, embedded
    assert all((tmp_path / image).read_bytes()[:4] == b"\x89PNG" for image in images)
    assert f"**{len(result['claims'])} of {len(result['claims'])} claims held**" in report
    assert "claims held" in capsys.readouterr().out
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "REPORT.md").stat().st_mode) == 0o666 & ~umask  # readable by a colleague


def test_a_crashing_experiment_is_a_failed_claim_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "HERE", str(tmp_path))
    (tmp_path / "seed_example.py").write_text('"""Breaks on purpose."""\nraise SystemExit(3)\n')
    assert demo.main(["--out", str(tmp_path / "out"), "--experiments", "seed_example"]) == 1
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["claims"] == {"seed_example: seed_example.py ran to the end (exit code 3)": False}
    assert "**FAILED**" in (tmp_path / "out" / "REPORT.md").read_text()
