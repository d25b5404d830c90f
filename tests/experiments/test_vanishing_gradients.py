"""experiments/vanishing_gradients.py: per-layer gradient norms at initialisation, by activation and
initialiser."""

import jax
import jax.numpy as jnp
import numpy as np
import vanishing_gradients as vg

import fbackprop as fb


def test_vanishing_gradients_quick(run_quick):
    result = run_quick(vg)
    m = result["metrics"]
    assert set(result["figures"]) == {"norms_by_layer", "first_layer_vs_depth"}
    depth = m["depth"]
    # sigmoid vanishes by orders of magnitude; relu + He does not
    assert m["W_first_over_last/sigmoid/glorot"] < 1e-3
    assert 0.1 < m["W_first_over_last/relu/he"] < 10
    assert m["vs_autodiff_max_rel"] <= 1e-10
    # the depth sweep ends at the deep net's first layer
    assert m["depths"][-1] == depth and len(m["first_layer_vs_depth"]["sigmoid/glorot"]) == len(m["depths"])
    sweep = m["first_layer_vs_depth"]["sigmoid/glorot"]
    assert sweep[-1] < sweep[0] * 1e-2


def test_gain_and_spread():
    norms = 3.0 * 0.5 ** np.arange(5)[::-1]  # layer 1 smallest: halves at every step back
    assert np.isclose(vg.gain(norms), 0.5)
    assert np.isclose(vg.spread(norms), 16.0)
    assert np.allclose(vg.geomean(np.array([[1.0, 10.0], [100.0, 10.0]])), [10.0, 10.0])


def test_truncate_gives_the_shallower_networks_params():
    deep = fb.mlp(vg.sizes(5, 8)).init(jax.random.key(0), jnp.float64)
    shallow = vg.truncate(deep, 2)
    fb.validate.check_params(fb.mlp(vg.sizes(2, 8)), shallow)
    assert shallow[-1] is deep[-1] and shallow[0] is deep[0]


def test_norms_match_autodiff_and_the_sigmoid_bound():
    """The vmapped norms equal those of jax.grad's gradients, and each backward step obeys
    ||delta^{l-1}|| <= max|f'| ||W^l||_2 ||delta^l|| with max|f'| = 1/4 for sigmoid."""
    depth, width, seeds = 3, 8, 2
    x, y = vg.batch(0, 16, width)
    params = vg.init_all(depth, width, seeds, jax.random.key(1))  # len(INITS) * seeds networks
    gW, d = vg.norms_fn("sigmoid", depth, width, x, y)(params)
    assert gW.shape == d.shape == (len(vg.INITS) * seeds, depth + 1)
    net = fb.mlp(vg.sizes(depth, width), activation="sigmoid")
    for s in (0, len(vg.INITS) * seeds - 1):  # the first uniform and the last lecun network
        p = jax.tree.map(lambda leaf: leaf[s], params)  # noqa: B023 (used at once, inside the loop)
        ref = fb.autodiff(net, "cross_entropy")(p, x, y)
        np.testing.assert_allclose(gW[s], [np.linalg.norm(g["W"]) for g in ref], rtol=1e-12)
        for l in range(1, depth + 1):  # delta^l (0-based l) comes back through W^{l+1}
            bound = 0.25 * np.linalg.norm(np.asarray(p[l]["W"]), 2) * d[s, l]
            assert d[s, l - 1] <= bound * (1 + 1e-12)
