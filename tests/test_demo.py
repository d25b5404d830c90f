"""The main job runs in quick mode, and every claim it records holds."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import demo  # noqa: E402


def test_demo_quick(tmp_path, capsys):
    assert demo.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["claims"] and all(result["claims"].values())
    assert result["gradcheck"]["networks"] >= 13
    out = capsys.readouterr().out
    assert "backprop vs jax.grad" in out and "target  output" in out and "claims held" in out
