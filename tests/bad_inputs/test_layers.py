"""Bad input to the layers, fb.serial, fb.check_layer and the quantities on any network.

Every row: a clear TypeError/ValueError from fbackprop's own code, before anything is compiled
(the runner is ``cases.check``; see ``cases.py``).
"""

import jax
import numpy as np

import fbackprop as fb
from fbackprop import layers as L

from .cases import Case, check, table

CNN = fb.serial(
    L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("relu"), L.AvgPool2D(2), L.Flatten(), L.Dense(2),
    input_shape=(4, 4, 1),
)  # fmt: skip
P = jax.eval_shape(lambda: CNN.init(jax.random.key(0)))
PARAMS = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), P)
WRONG_W = (dict(PARAMS[0], W=np.zeros((2, 3, 3, 2), np.float32)), PARAMS[1])
X = np.zeros((3, 4, 4, 1), np.float32)
Y = np.zeros((3, 2), np.float32)
KEY = jax.random.key(0)


class NoCurvature:
    """A user's layer with the first-order passes only."""

    has_params = False

    def init(self, key, in_shape, dtype):
        return None, in_shape

    def forward(self, theta, x):
        return 2.0 * x, None

    def backward(self, theta, cache, g):
        return 2.0 * g, None


class NoBackward(NoCurvature):
    """A layer without a backward pass."""

    backward = None


USER = fb.serial(L.Flatten(), NoCurvature(), L.Dense(2), input_shape=(4, 4, 1))

CASES = [
    # --- layer constructors -------------------------------------------------------------------
    Case(
        "Dense: n_out=0",
        lambda: L.Dense(0),
        ValueError,
        r"Dense n_out must be an integer from 1 to inf; got 0",
    ),
    Case("Dense: n_out=2.5", lambda: L.Dense(2.5), TypeError, r"Dense n_out must be an integer; got 2\.5"),
    Case("Dense: unknown init", lambda: L.Dense(3, "xavier"), ValueError, r"Dense init must be one of \["),
    Case(
        "Activation: unknown name",
        lambda: L.Activation("softmax"),
        ValueError,
        r"unknown activation 'softmax'",
    ),
    Case(
        "Conv2D: kernel 0",
        lambda: L.Conv2D(2, (3, 0)),
        ValueError,
        r"Conv2D kernel_size\[1\] must be an integer",
    ),
    Case(
        "Conv2D: kernel '3'",
        lambda: L.Conv2D(2, "3"),
        TypeError,
        r"Conv2D kernel_size must be an int or a pair",
    ),
    Case(
        "Conv2D: padding 'same'",
        lambda: L.Conv2D(2, 3, padding="same"),
        ValueError,
        r"padding must be one of",
    ),
    Case(
        "Conv2D: stride 1.5",
        lambda: L.Conv2D(2, 3, stride=1.5),
        TypeError,
        r"Conv2D stride must be an int or a",
    ),
    Case(
        "MaxPool2D: stride 1.5",
        lambda: L.MaxPool2D(2, 1.5),
        TypeError,
        r"MaxPool2D stride must be an int or a",
    ),
    Case("AvgPool2D: window 0", lambda: L.AvgPool2D(0), ValueError, r"AvgPool2D window"),
    Case(
        "LayerNorm: eps=0", lambda: L.LayerNorm(0.0), ValueError, r"LayerNorm eps must lie in \(0\.0, inf\]"
    ),
    Case("Residual: no layers", lambda: L.Residual(), ValueError, r"Residual needs at least one layer"),
    # --- fb.serial -----------------------------------------------------------------------------
    Case(
        "serial: not a layer",
        lambda: fb.serial(L.Dense(2), "relu", input_shape=(3,)),
        TypeError,
        r"layer 2 \('relu'\) is not an fbackprop layer",
    ),
    Case(
        "serial: input_shape 'x'",
        lambda: fb.serial(L.Dense(2), input_shape="x"),
        TypeError,
        r"input_shape must be one example's shape",
    ),
    Case(
        "serial: input_shape 0",
        lambda: fb.serial(L.Dense(2), input_shape=(0,)),
        ValueError,
        r"input_shape\[0\] must be an integer from 1",
    ),
    Case(
        "serial: Dense on images",
        lambda: fb.serial(L.Dense(2), input_shape=(4, 4, 1)),
        ValueError,
        r"layer 1 Dense: Dense takes one flat vector per example.*Flatten",
    ),
    Case(
        "serial: Conv2D on vectors",
        lambda: fb.serial(L.Conv2D(2, 3), L.Flatten(), L.Dense(1), input_shape=(9,)),
        ValueError,
        r"layer 1 Conv2D: .*takes images, one example's input shape \(H, W, C\)",
    ),
    Case(
        "serial: kernel larger than the image",
        lambda: fb.serial(L.Conv2D(2, 5), input_shape=(4, 4, 1)),
        ValueError,
        r"layer 1 Conv2D: .*window \(5, 5\) is larger than the input",
    ),
    Case(
        "serial: residual changes the shape",
        lambda: fb.serial(L.Residual(L.Dense(3)), input_shape=(2,)),
        ValueError,
        r"layer 1 Residual: Residual's block must keep the shape of its input",
    ),
    Case(
        "serial: output not a vector",
        lambda: fb.serial(L.Conv2D(2, 3), input_shape=(4, 4, 1)),
        ValueError,
        r"output must be one vector per example.*\(2, 2, 2\).*Flatten",
    ),
    Case(
        "serial: LayerNorm over one channel",
        lambda: fb.serial(L.LayerNorm(), L.Flatten(), L.Dense(1), input_shape=(4, 4, 1)),
        ValueError,
        r"layer 1 LayerNorm: LayerNorm needs at least 2 features",
    ),
    # --- a CNN's boundary -----------------------------------------------------------------------
    Case(
        "CNN: x a batch of vectors",
        lambda: fb.backprop(CNN, "squared_error")(PARAMS, np.zeros((3, 16)), Y),
        ValueError,
        r"x must have shape \(N, 4, 4, 1\) \(one example per leading row\); got shape \(3, 16\)",
    ),
    Case(
        "CNN: x of other images",
        lambda: fb.backprop(CNN, "squared_error")(PARAMS, np.zeros((3, 4, 5, 1)), Y),
        ValueError,
        r"x has examples of shape \(4, 5, 1\) but the network expects \(4, 4, 1\)",
    ),
    Case(
        "CNN: params of another CNN",
        lambda: CNN.apply(WRONG_W, X),
        ValueError,
        r"params\[0\]\['W'\] has shape \(2, 3, 3, 2\) but layer 1 Conv2D needs \(2, 3, 3, 1\)",
    ),
    Case(
        "CNN: params a dict",
        lambda: CNN.apply(PARAMS[0], X),
        ValueError,
        r"params must be a tuple of 2 entries, one per layer with parameters for the network; got a dict",
    ),
    Case(
        "user layer: hessian_diag without backward2",
        lambda: fb.hessian_diag(USER, "squared_error"),
        TypeError,
        r"fb.hessian_diag needs backward2 on every layer; layer 2 NoCurvature has none: add NoCurvature\.bac",
    ),
    Case(
        "user layer: hvp without forward_r",
        lambda: fb.hvp(USER, "squared_error", method="backprop"),
        TypeError,
        r"needs forward_r on every layer; layer 2 NoCurvature has none: add NoCurvature.forward_r",
    ),
    Case(
        "user layer: hessian_blocks without backward2",
        lambda: fb.hessian_blocks(USER, "squared_error"),
        TypeError,
        r"fb.hessian_blocks needs backward2 on every layer; layer 2 NoCurvature has none",
    ),
    # --- fb.check_layer and fb.compare(net=) ---------------------------------------------------
    Case(
        "check_layer: the class",
        lambda: fb.check_layer(L.Dense, (3,), KEY),
        TypeError,
        r"check_layer: layer must be a layer instance such as fb\.layers\.Dense\(3\); got the class Dense",
    ),
    Case(
        "check_layer: input_shape 0",
        lambda: fb.check_layer(L.Dense(2), (0,), KEY),
        ValueError,
        r"check_layer input_shape\[0\] must be an integer from 1",
    ),
    Case(
        "check_layer: no backward",
        lambda: fb.check_layer(NoBackward(), (3,), KEY),
        TypeError,
        r"has no method 'backward': add backward\(theta, cache, g\) -> \(g_in, dtheta\)",
    ),
    Case(
        "compare: net a string",
        lambda: fb.compare(PARAMS, PARAMS, net="cnn"),
        TypeError,
        r"compare: net must be an fbackprop Network",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
