"""experiments/seed_example.py: the seed example, hand-written vs autodiff vs the tutorial's NumPy code."""

import seed_example


def test_seed_example_quick(run_quick):
    result = run_quick(seed_example)
    assert result["metrics"]["weights_max_abs_diff"] <= 1e-10
    assert "loss_and_outputs" in result["figures"]
