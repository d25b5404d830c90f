"""experiments/residual_depth.py: gradient norms per layer at initialisation and training, plain vs
residual vs residual + layer norm sigmoid networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import residual_depth as rd

import fbackprop as fb

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_residual_depth_quick(run_quick):
    result = run_quick(rd)
    m = result["metrics"]
    assert set(result["figures"]) == {"norms_by_layer", "training"}
    lo, hi = m["depths"][0], m["depths"][-1]
    assert lo < hi
    plain, res = m["first_layer_norm"]["plain"], m["first_layer_norm"]["residual"]
    # the plain net's first layer loses orders of magnitude; the residual one's does not
    assert plain[hi] < plain[lo] * 10.0 ** (-rd.ORDERS_PER_BLOCK * (hi - lo))
    assert res[hi] > 100 * plain[hi]
    assert m["ratio_max"]["residual_ln"][hi] < rd.TRAINED < rd.STUCK < m["ratio_min"]["plain"][hi]
    assert m["vs_autodiff_max_rel"] <= 1e-10
    # one norm per dense layer: the input layer, one per block, the head
    for v in rd.VARIANTS:
        assert len(m["norms_by_layer"][v][hi]) == hi + 2


@pytest.mark.parametrize("variant", rd.VARIANTS)
def test_norms_are_jax_grads(variant):
    """The vmapped hand-written norms equal the norms of jax.grad's gradients, every dense layer."""
    depth = 3
    net = rd.network(variant, depth, width=5)
    x = np.random.default_rng(0).standard_normal((7, 64))
    y = np.arange(7) % 10
    params = fb.init_many(net, jax.random.key(1), 2, jnp.float64)
    norms = rd.norms_at_init(net, params, x, y)
    assert norms.shape == (2, depth + 2)
    p = jax.tree.map(lambda leaf: leaf[1], params)
    ref = [np.linalg.norm(W) for W in rd.dense_weights(fb.autodiff(net, "cross_entropy")(p, x, y))]
    np.testing.assert_allclose(norms[1], ref, rtol=1e-12)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        rd.network("dense", 2)


def test_quick_needs_two_depths(tmp_path):
    with pytest.raises(SystemExit):
        rd.main(["--quick", "--depths", "4", "--out", str(tmp_path)])
