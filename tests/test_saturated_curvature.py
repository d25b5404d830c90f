"""Curvature where the softmax and the logistic saturate, against extended-precision references.

The references are computed with mpmath from the float64 inputs (converted exactly) by the
textbook formulas, ``diag(p) - p p^T`` and friends, at ``DPS`` digits: at logit gaps up to 80 the
cancellation in ``p_k - p_k^2`` costs about 35 digits, which leaves 65, far beyond float64.

Criteria (float64, ``EPS = 2.2e-16``):

- accuracy: every entry's error relative to the scale of its example's matrix (its largest
  entry; for products, that times the largest tangent entry) is at most ``TOL_LOSS`` (8 eps) for
  the loss pieces and ``TOL_NET`` (1e-13) for the network quantities built on them, relative to
  the largest entry of the reference. On the network about 1e-14 is float64's own floor: ``J v``
  (entries ~100) is rounded before ``H`` (~1e-17) contracts it with cancellation, so even the
  dense ``J^T H J`` lands there; the textbook ``p - p^2`` is off by 2e-2 to 2e-1 on this net.
  Diagonal matrices (binary cross-entropy) are held to each entry's own relative accuracy.
- positive semi-definite: the exact eigenvalues (mpmath) of the float64 matrix satisfy
  ``lambda_min >= -PSD_TOL * lambda_max``: PSD up to what rounding each entry to float64 can do
  (an entrywise error of ``eps |H|`` moves an eigenvalue by at most ``n_out eps ||H||``). The
  textbook form at logits ``(0, 0, 40)`` has ``lambda_min`` about ``-0.6 lambda_max``.

On the network, the exact Hessian and GGN come from second-order forward differentiation in
mpmath (hyper-dual numbers: ``C(theta + e1 u + e2 w)`` carries ``u^T H w`` exactly).
"""

from __future__ import annotations

import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import fbackprop as fb
from fbackprop import losses as L

DPS = 100
EPS = float(np.finfo(np.float64).eps)
TOL_LOSS = 8 * EPS
TOL_NET = 1e-13
PSD_TOL = 4 * EPS

# logits up to +-40: one winner, ties, a near tie, a moderate row, and two winners far from the rest
LOGITS = np.array(
    [
        [0.0, 0.0, 40.0],
        [0.0, 0.0, 30.0],
        [0.0, 0.0, 20.0],
        [40.0, -40.0, 0.0],
        [-40.0, 40.0, 39.0],
        [40.0, 40.0, -40.0],
        [-40.0, -40.0, -40.0],
        [1.5, -0.3, 0.7],
        [-40.0, 3.0, 40.0],
    ]
)
V = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 0.1, -0.7]] * 3)


# --- mpmath references ---------------------------------------------------------------------------
def mp_softmax(z):
    with mp.workdps(DPS):
        e = [mp.exp(mp.mpf(float(v))) for v in z]
        s = mp.fsum(e)
        return [x / s for x in e]


def mp_ce_hessian(z):
    with mp.workdps(DPS):
        p = mp_softmax(z)
        return [[(p[i] if i == j else 0) - p[i] * p[j] for j in range(len(p))] for i in range(len(p))]


def mp_ce_sqrt(z):
    with mp.workdps(DPS):
        p = mp_softmax(z)
        return [
            [(mp.sqrt(p[i]) if i == j else 0) - p[i] * mp.sqrt(p[j]) for j in range(len(p))]
            for i in range(len(p))
        ]


def mp_ce_grad(z, label):
    with mp.workdps(DPS):
        p = mp_softmax(z)
        return [p[k] - (1 if k == label else 0) for k in range(len(p))]


def mp_sigmoid_curvature(z):
    with mp.workdps(DPS):
        s = 1 / (1 + mp.exp(-mp.mpf(float(z))))
        return s - s * s


def to_np(m):
    return (
        np.array([[float(v) for v in row] for row in m])
        if isinstance(m[0], list)
        else np.array([float(v) for v in m])
    )


def mp_matvec(m, v):
    with mp.workdps(DPS):
        return [mp.fsum(m[i][j] * mp.mpf(float(v[j])) for j in range(len(v))) for i in range(len(m))]


def exact_eigenvalues(h):
    """Eigenvalues of the float64 matrix ``h`` itself, computed at ``DPS`` digits."""
    with mp.workdps(DPS):
        return sorted(float(e) for e in mp.eigsy(mp.matrix(h.tolist()), eigvals_only=True))


def scaled_error(got, ref, scale):
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / scale)


# --- the loss pieces -----------------------------------------------------------------------------
def test_cross_entropy_hessian_accurate_and_psd_where_softmax_saturates():
    H = np.asarray(L.cross_entropy.hessian(jnp.asarray(LOGITS), jnp.argmax(LOGITS, axis=1)))
    for z, h in zip(LOGITS, H):
        ref = to_np(mp_ce_hessian(z))
        assert scaled_error(h, ref, np.max(np.abs(ref))) <= TOL_LOSS, z
        assert np.all(np.diag(h) > 0), (z, np.diag(h))  # the winner's p_k (1 - p_k) is not 0
        lam = exact_eigenvalues(h)
        assert lam[0] >= -PSD_TOL * lam[-1], (z, lam)


def test_cross_entropy_hvp_accurate_where_softmax_saturates():
    Hv = np.asarray(L.cross_entropy.hvp(jnp.asarray(LOGITS), jnp.argmax(LOGITS, axis=1), jnp.asarray(V)))
    for z, v, hv in zip(LOGITS, V, Hv):
        H = mp_ce_hessian(z)
        ref = to_np(mp_matvec(H, v))
        assert scaled_error(hv, ref, np.max(np.abs(to_np(H))) * np.max(np.abs(v))) <= TOL_LOSS, z


def test_cross_entropy_hessian_sqrt_accurate_and_factors_the_hessian():
    S = np.asarray(L.cross_entropy.hessian_sqrt(jnp.asarray(LOGITS), jnp.argmax(LOGITS, axis=1)))
    for z, s in zip(LOGITS, S):
        ref = to_np(mp_ce_sqrt(z))
        assert scaled_error(s, ref, np.max(np.abs(ref))) <= TOL_LOSS, z
        H = to_np(mp_ce_hessian(z))
        assert scaled_error(s @ s.T, H, np.max(np.abs(H))) <= TOL_LOSS, z


def test_cross_entropy_gradient_accurate_where_softmax_saturates():
    labels = np.argmax(LOGITS, axis=1)
    G = np.asarray(L.cross_entropy.grad(jnp.asarray(LOGITS), labels))
    for z, k, g in zip(LOGITS, labels, G):
        ref = to_np(mp_ce_grad(z, k))
        assert scaled_error(g, ref, np.max(np.abs(ref))) <= TOL_LOSS, z


@pytest.mark.parametrize("piece", ["hessian", "hvp", "hessian_sqrt", "grad"])
def test_binary_cross_entropy_accurate_at_large_logits(piece):
    z = np.array([[-40.0, -30.0, -1.0, 0.0, 2.5, 30.0, 40.0]])
    y = (z > 0).astype(np.float64)
    loss = L.binary_cross_entropy
    if piece == "hessian":
        got = np.diag(np.asarray(loss.hessian(z, y))[0])
    elif piece == "hvp":
        got = np.asarray(loss.hvp(z, y, np.ones_like(z)))[0]
    elif piece == "hessian_sqrt":
        got = np.diag(np.asarray(loss.hessian_sqrt(z, y))[0]) ** 2
    else:
        got = np.asarray(loss.grad(z, y))[0]
    with mp.workdps(DPS):
        if piece == "grad":
            ref = np.array([float(1 / (1 + mp.exp(-mp.mpf(float(v)))) - t) for v, t in zip(z[0], y[0])])
        else:
            ref = np.array([float(mp_sigmoid_curvature(v)) for v in z[0]])
    # every entry to its own relative accuracy (the sqrt's square: 2 roundings more)
    np.testing.assert_array_less(np.abs(got - ref) / np.abs(ref), TOL_LOSS)


# --- the network: a 2-3-3 tanh net whose logits reach +-40 ----------------------------------------
NET = fb.mlp([2, 3, 3], activation="tanh")
X = np.array([[0.6, -1.2], [-0.8, 0.4], [1.1, 0.9]])


def net_params():
    W1 = np.array([[0.9, -0.4], [0.3, 0.8], [-0.7, 0.5]])
    b1 = np.array([0.1, -0.2, 0.05])
    W2 = np.array([[24.23, -48.32, 74.74], [-43.16, 46.66, -93.49], [56.93, -40.12, 48.34]])  # logits ~ +-40
    b2 = np.zeros(3)
    return ({"W": jnp.asarray(W1), "b": jnp.asarray(b1)}, {"W": jnp.asarray(W2), "b": jnp.asarray(b2)})


class HD:
    """Hyper-dual number ``a + b e1 + c e2 + d e1 e2`` (``e1^2 = e2^2 = 0``) over mpmath reals."""

    __slots__ = ("a", "b", "c", "d")

    def __init__(self, a, b=0, c=0, d=0):
        self.a, self.b, self.c, self.d = a, b, c, d

    def __add__(self, o):
        o = o if isinstance(o, HD) else HD(o)
        return HD(self.a + o.a, self.b + o.b, self.c + o.c, self.d + o.d)

    __radd__ = __add__

    def __neg__(self):
        return HD(-self.a, -self.b, -self.c, -self.d)

    def __sub__(self, o):
        return self + (-(o if isinstance(o, HD) else HD(o)))

    def __mul__(self, o):
        o = o if isinstance(o, HD) else HD(o)
        return HD(
            self.a * o.a,
            self.a * o.b + self.b * o.a,
            self.a * o.c + self.c * o.a,
            self.a * o.d + self.b * o.c + self.c * o.b + self.d * o.a,
        )

    __rmul__ = __mul__

    def chain(self, f, df, d2f):
        """``g(self)`` from ``g(a), g'(a), g''(a)``."""
        return HD(f, df * self.b, df * self.c, df * self.d + d2f * self.b * self.c)

    def exp(self):
        e = mp.exp(self.a)
        return self.chain(e, e, e)

    def log(self):
        return self.chain(mp.log(self.a), 1 / self.a, -1 / self.a**2)

    def tanh(self):
        t = mp.tanh(self.a)
        return self.chain(t, 1 - t * t, -2 * t * (1 - t * t))


def mp_logits(theta, x):
    """The network's logits ``(N, 3)`` at flat params ``theta`` (a list of HD), in ``flatten``'s order."""
    W1 = [theta[2 * i : 2 * i + 2] for i in range(3)]  # the 2-3 layer's W: (3, 2), row-major
    b1 = theta[6:9]
    W2 = [theta[9 + 3 * i : 12 + 3 * i] for i in range(3)]
    b2 = theta[18:21]
    out = []
    for row in x:
        a = [(W1[i][0] * row[0] + W1[i][1] * row[1] + b1[i]).tanh() for i in range(3)]
        out.append([W2[k][0] * a[0] + W2[k][1] * a[1] + W2[k][2] * a[2] + b2[k] for k in range(3)])
    return out


def mp_cost(theta, x, labels):
    """``C = (1/N) sum_n [log sum_j exp z_nj - z_n,label]``."""
    total = HD(0)
    for z, k in zip(mp_logits(theta, x), labels):
        total = total + (z[0].exp() + z[1].exp() + z[2].exp()).log() - z[k]
    return total * (mp.mpf(1) / len(labels))


def hd_params(theta0, u, w):
    return [HD(mp.mpf(float(t)), mp.mpf(float(a)), mp.mpf(float(b))) for t, a, b in zip(theta0, u, w)]


def mp_hessian_products(theta0, x, labels, pairs):
    """``u^T H w`` at ``DPS`` digits for each ``(u, w)`` in ``pairs``."""
    xs = [[mp.mpf(float(v)) for v in row] for row in x]
    with mp.workdps(DPS):
        return [mp_cost(hd_params(theta0, u, w), xs, labels).d for u, w in pairs]


def mp_ggn(theta0, x, labels):
    """``G = (1/N) sum_n J_n^T H_n J_n`` at ``DPS`` digits, as an mpmath matrix (P, P)."""
    P = theta0.size
    xs = [[mp.mpf(float(v)) for v in row] for row in x]
    with mp.workdps(DPS):
        cols = []
        for i in range(P):
            e = np.eye(P)[i]
            z = mp_logits(hd_params(theta0, e, np.zeros(P)), xs)
            cols.append([[zk.b for zk in zn] for zn in z])  # J[:, n, k] = dz_nk/dtheta_i
        z0 = [[zk.a for zk in zn] for zn in mp_logits(hd_params(theta0, np.zeros(P), np.zeros(P)), xs)]
        G = mp.zeros(P, P)
        for n, zn in enumerate(z0):
            e = [mp.exp(v) for v in zn]
            s = mp.fsum(e)
            p = [v / s for v in e]
            H = [[(p[i] if i == j else 0) - p[i] * p[j] for j in range(3)] for i in range(3)]
            J = [[cols[i][n][k] for i in range(P)] for k in range(3)]  # (3, P)
            HJ = [[mp.fsum(H[k][m] * J[m][i] for m in range(3)) for i in range(P)] for k in range(3)]
            for i in range(P):
                for j in range(P):
                    G[i, j] += mp.fsum(J[k][i] * HJ[k][j] for k in range(3)) / len(z0)
        return G


@pytest.fixture(scope="module")
def network():
    params = net_params()
    theta0 = np.asarray(ravel_pytree(params)[0])
    logits = np.asarray(NET.apply(params, jnp.asarray(X)))
    labels = np.argmax(logits, axis=1)
    v = np.sin(np.arange(theta0.size) + 1.0)
    P = theta0.size
    hv = to_np(mp_hessian_products(theta0, X, labels, [(np.eye(P)[i], v) for i in range(P)]))
    hd = to_np(mp_hessian_products(theta0, X, labels, [(np.eye(P)[i], np.eye(P)[i]) for i in range(P)]))
    G = mp_ggn(theta0, X, labels)
    gv = to_np(mp_matvec([[G[i, j] for j in range(P)] for i in range(P)], v))
    gd = np.array([float(G[i, i]) for i in range(P)])
    return dict(
        params=params,
        labels=labels,
        logits=logits,
        v=v,
        hv=hv,
        hd=hd,
        gv=gv,
        gd=gd,
        unflatten=ravel_pytree(params)[1],
    )


def test_the_network_saturates(network):
    z = network["logits"]
    assert np.max(np.abs(z)) >= 35 and np.max(np.abs(z)) <= 41
    gaps = np.sort(z, axis=1)[:, -1] - np.sort(z, axis=1)[:, -2]
    assert np.all(gaps > 25)  # every example's winner has p >= 1 - 3e-11


@pytest.mark.parametrize("quantity", ["hvp_backprop", "ggn_vp", "hessian_diag", "ggn_diag"])
def test_network_curvature_accurate_where_softmax_saturates(network, quantity):
    params, labels, v = network["params"], network["labels"], network["v"]
    V_tree = network["unflatten"](jnp.asarray(v))
    x = jnp.asarray(X)
    if quantity == "hvp_backprop":
        got, ref = fb.hvp(NET, "cross_entropy", method="backprop")(params, x, labels, V_tree), network["hv"]
    elif quantity == "ggn_vp":
        got, ref = fb.ggn_vp(NET, "cross_entropy")(params, x, labels, V_tree), network["gv"]
    elif quantity == "hessian_diag":
        got, ref = fb.hessian_diag(NET, "cross_entropy")(params, x, labels), network["hd"]
    else:
        got, ref = fb.ggn_diag(NET, "cross_entropy")(params, x, labels), network["gd"]
    got = np.asarray(ravel_pytree(got)[0])
    assert scaled_error(got, ref, np.max(np.abs(ref))) <= TOL_NET


def test_values_keep_their_digits_where_the_fit_is_confident():
    """A well-fit example's loss (about 4e-18 at a logit gap of 40) is not rounded to 0."""
    labels = np.argmax(LOGITS, axis=1)
    got = np.asarray(L.cross_entropy.value(jnp.asarray(LOGITS), labels))
    for z, k, l in zip(LOGITS, labels, got):
        with mp.workdps(DPS):
            ref = float(mp.log(mp.fsum(mp.exp(mp.mpf(float(v))) for v in z)) - mp.mpf(float(z[k])))
        assert abs(l - ref) <= TOL_LOSS * ref, (z, l, ref)
    z = np.array([[-40.0, -30.0, -1.0, 0.0, 2.5, 30.0, 40.0]])
    for y in ((z > 0).astype(np.float64), (z < 0).astype(np.float64)):  # right and wrong confident answers
        got = np.asarray(L.binary_cross_entropy.value(z.T, y.T))
        with mp.workdps(DPS):
            ref = np.array([float(mp.log(1 + mp.exp(mp.mpf(float(v)))) - t * v) for v, t in zip(z[0], y[0])])
        np.testing.assert_array_less(np.abs(got - ref) / ref, TOL_LOSS)
