"""experiments/learning_rate.py: too small, good and too large rates; divergence reported; a sweep in one
call."""

import jax
import jax.numpy as jnp
import learning_rate
import numpy as np

import fbackprop as fb
from fbackprop.status import MESSAGES, Status


def test_learning_rate_quick(run_quick):
    result = run_quick(learning_rate)
    runs = result["metrics"]["runs"]
    assert [runs[k]["status"] for k in ("small", "good", "large")] == [
        Status.MAX_EPOCHS,
        Status.GOAL,
        Status.DIVERGED,
    ]
    assert [runs[k]["status_text"] for k in ("small", "good", "large")] == [
        MESSAGES[Status.MAX_EPOCHS],
        MESSAGES[Status.GOAL],
        MESSAGES[Status.DIVERGED],
    ]  # "max epochs/steps reached", ...
    large = runs["large"]
    assert large["params_finite"] and np.isfinite(large["loss_at_params"])
    assert f"diverged at step {large['diverged_step']}" in large["message"]
    sweep = result["metrics"]["sweep"]
    assert len(sweep["rates"]) == 13 and any(sweep["diverged"]) and not all(sweep["diverged"])
    assert set(result["figures"]) == {"loss_curves", "sweep"}


def test_lambda_max_of_a_linear_model_is_that_of_its_normal_matrix():
    # one linear layer, C = 1/(2N) sum (w x + b - y)^2: the Hessian is mean([x, 1] [x, 1]^T), constant
    net = fb.mlp([1, 1])
    x = np.linspace(-2.0, 3.0, 7)[:, None]
    y = np.sin(x)
    params = net.init(jax.random.key(0), jnp.float64)
    X = np.hstack([x, np.ones_like(x)])
    expected = np.linalg.eigvalsh(X.T @ X / len(x))[-1]
    np.testing.assert_allclose(learning_rate.lambda_max(net, params, x, y), expected, rtol=1e-12)


def test_last_finite_skips_the_diverged_and_stopped_entries():
    assert learning_rate.last_finite(np.array([1.0, 10.0, 1e300, np.inf, np.nan, np.nan])) == 1e300
