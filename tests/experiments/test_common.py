"""experiments/common.py and fbackprop.results: what every experiment shares.

``--help`` shows every option's default; results files get the user's umask (a colleague can read
them), still written atomically.
"""

import argparse
import importlib
import os
import re
import stat
from pathlib import Path

import common
import pytest

import fbackprop as fb

EXPERIMENTS = sorted(
    p.stem
    for p in (Path(__file__).resolve().parents[2] / "experiments").glob("*.py")
    if p.stem not in ("common", "seed_numpy")
)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_shows_every_default(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: no wrapped "(default:"
    parsers = []
    real_parse = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(
        argparse.ArgumentParser,
        "parse_args",
        lambda self, *a, **k: (parsers.append(self), real_parse(self, *a, **k))[1],
    )
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert re.search(r"^ +--seed SEED +.*\(default: 0\)$", text, flags=re.M), text
    (parser,) = parsers
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{name}: {action.option_strings} has no help text"
        if action.default not in (None, False):
            assert (
                f"(default: {action.default})" in text
                or f"(default: {' '.join(map(str, action.default))})" in text
                or str(action.default) in text
            ), f"{name}: {action.option_strings} hides its default"


def test_help_formatter_leaves_out_empty_defaults():
    p = common.parser("Doc line.\n\nMore.", "x")
    p.add_argument("--steps", type=int, default=None, help="steps (default 100, quick 10)")
    p.add_argument("--rate", type=float, default=0.5, help="the rate")
    text = p.format_help()
    assert "the rate (default: 0.5)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "runs/x" in text  # --out's default


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
@pytest.mark.parametrize("writer", ["text", "json", "figure"])
def test_results_files_get_the_users_umask(tmp_path, umask, writer):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old = os.umask(umask)
    try:
        path = tmp_path / "out" / f"file.{writer}"
        if writer == "text":
            fb.results.write_text(path, "hello\n")
        elif writer == "json":
            fb.results.write_json(path, {"a": 1})
        else:
            fig = plt.figure()
            fb.results.write_figure(path, fig)
            plt.close(fig)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_atomic_write_replaces_the_whole_file(tmp_path):
    path = fb.results.write_text(tmp_path / "r.md", "old\n")
    fb.results.write_text(path, "new\n")
    assert path.read_text() == "new\n" and len(list(tmp_path.iterdir())) == 1
