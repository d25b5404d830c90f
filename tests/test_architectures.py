"""Random networks drawn from every layer kind: every hand-written quantity against autodiff (float64).

Conv stacks (strides, paddings, kernel sizes, channel counts), residual blocks, layer norms, average
and max pooling, dense heads; every loss. Each example checks the gradient, the cost, per-example
gradients, the Jacobian and its Gram matrix, the R-operator HVP, the exact Hessian and GGN diagonals
(whole and chunked) and the layer blocks against their autodiff twins to 1e-10 relative.
"""

from architectures import assert_twins_agree, problem
from hypothesis import given, settings
from hypothesis import strategies as st

import fbackprop as fb
from fbackprop import layers as L

ACTIVATIONS = ("tanh", "sigmoid", "softplus", "gelu", "swish", "elu", "relu")
LOSSES = ("squared_error", "cross_entropy", "binary_cross_entropy")


@st.composite
def architectures(draw):
    """``(net, loss, n)``: an image network of 0-2 conv layers, maybe a residual conv block, a layer
    norm and a pool, then a flatten and a dense head."""
    h, w, c = draw(st.integers(3, 6)), draw(st.integers(3, 6)), draw(st.integers(1, 2))
    layers, shape = [], (h, w, c)
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 3)]))
        stride = draw(st.sampled_from([1, 2]))
        padding = draw(st.sampled_from(["VALID", "SAME"]))
        if padding == "VALID" and (k[0] > shape[0] or k[1] > shape[1]):
            padding = "SAME"
        out = draw(st.integers(1, 3))
        layers += [
            L.Conv2D(out, k, stride=stride, padding=padding),
            L.Activation(draw(st.sampled_from(ACTIVATIONS))),
        ]
        shape = _conv_shape(shape, k, stride, padding, out)
    if draw(st.booleans()):
        act = L.Activation(draw(st.sampled_from(ACTIVATIONS)))
        layers.append(L.Residual(L.Conv2D(shape[2], (3, 3), padding="SAME"), act))
    if shape[2] >= 2 and draw(st.booleans()):  # a layer norm over one channel is refused
        layers.append(L.LayerNorm())
    if min(shape[:2]) >= 2 and draw(st.booleans()):
        layers.append(
            draw(st.sampled_from([L.AvgPool2D((2, 2)), L.MaxPool2D((2, 2)), L.MaxPool2D((2, 2), 1)]))
        )
    layers.append(L.Flatten())
    if draw(st.booleans()):
        layers += [L.Dense(draw(st.integers(1, 4))), L.Activation(draw(st.sampled_from(ACTIVATIONS)))]
    loss = draw(st.sampled_from(LOSSES))
    n_out = draw(st.integers(2 if loss == "cross_entropy" else 1, 3))
    layers.append(L.Dense(n_out))
    return (
        fb.serial(*layers, input_shape=(h, w, c)),
        loss,
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2**16)),
    )


def _conv_shape(shape, k, stride, padding, out):
    if padding == "SAME":
        return (-(-shape[0] // stride), -(-shape[1] // stride), out)
    return ((shape[0] - k[0]) // stride + 1, (shape[1] - k[1]) // stride + 1, out)


@settings(deadline=None, max_examples=3)  # each example compiles two programs of every quantity
@given(architectures())
def test_every_hand_written_quantity_matches_autodiff_on_random_architectures(drawn):
    net, loss, n, seed = drawn
    assert_twins_agree(net, *problem(net, n, loss, seed), loss)
