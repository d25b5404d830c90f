"""Patches of an image batch: unfolding (im2col) and its transpose, folding (col2im).

Images are channels-last, ``x: (N, H, W, C)``. A window of ``kernel = (kh, kw)`` moved by ``stride =
(sh, sw)`` over the (padded) image visits ``Ho x Wo`` positions; ``unfold`` copies the window at each
position into a row,

    P[n, i, j, (p, q, c)] = x_pad[n, i sh + p, j sw + q, c],   0 <= p < kh, 0 <= q < kw,

so that a convolution is one matrix product with the patches flattened in ``(kh, kw, C)`` order
(Chellapilla, Puri & Simard 2006). ``fold`` is the transpose of ``unfold`` (the adjoint: ``<unfold(x),
dP> = <x, fold(dP)>``): it adds every patch entry back onto the pixel it was copied from, so a pixel
covered by several windows receives the sum. Both loop over the ``kh kw`` kernel offsets only, each
offset one strided slice of the whole batch (``fold``: its transpose, a ``lax.pad`` with interior
padding).

Output sizes and padding follow ``jax.lax`` (and TensorFlow):

- ``"VALID"``: no padding, ``out = (n - k) // s + 1`` (the window must fit: ``k <= n``).
- ``"SAME"``: ``out = ceil(n / s)``, padded with ``total = max((out - 1) s + k - n, 0)`` zeros,
  ``total // 2`` before and the rest after.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from ..options import as_int, check_choice

PADDINGS = ("VALID", "SAME")


def as_pair(value, name: str) -> tuple[int, int]:
    """A kernel size, window or stride as a pair of positive ints: ``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``.

    Args:
        value: an int or a pair of ints.
        name: the argument's name, for messages (``"Conv2D kernel_size"``).

    Returns:
        ``(rows, cols)`` as Python ints (so that equal layers are equal and hash alike).

    Raises:
        TypeError: for something that is neither an int nor a pair of ints.
        ValueError: for a pair of the wrong length or a value below 1.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, cols) of ints; got {tuple(value)!r}")
        return as_int(value[0], f"{name}[0]"), as_int(value[1], f"{name}[1]")
    if isinstance(value, str) or not hasattr(value, "__index__"):
        raise TypeError(
            f"{name} must be an int or a pair (rows, cols) of ints; got {value!r} ({type(value).__name__})"
        )
    k = as_int(value, name)
    return k, k


def output_size(n: int, k: int, s: int, padding: str) -> int:
    """The number of window positions along one spatial axis.

    Args:
        n: the input's size along the axis.
        k: the window's size.
        s: the stride.
        padding: ``"VALID"`` (``(n - k) // s + 1``; 0 or less when the window does not fit) or
            ``"SAME"`` (``ceil(n / s)``).

    Returns:
        The output size.
    """
    check_choice(padding, "padding", PADDINGS)
    return (n - k) // s + 1 if padding == "VALID" else -(-n // s)


def padding_amounts(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """The zeros added before and after one spatial axis (``jax.lax``'s rule, as TensorFlow's).

    Args:
        n: the input's size along the axis.
        k: the window's size.
        s: the stride.
        padding: ``"VALID"`` (``(0, 0)``) or ``"SAME"`` (``total = max((out - 1) s + k - n, 0)``,
            ``(total // 2, total - total // 2)``).

    Returns:
        ``(low, high)``.
    """
    if check_choice(padding, "padding", PADDINGS) == "VALID":
        return 0, 0
    total = max((output_size(n, k, s, padding) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def out_shape(in_shape, kernel, stride, padding, channels: int | None = None) -> tuple[int, int, int]:
    """One example's output shape ``(Ho, Wo, C_out)`` from its input shape ``(H, W, C)``.

    Args:
        in_shape: ``(H, W, C)``.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``"VALID"`` or ``"SAME"``.
        channels: the output's channels (default ``None``: ``C``, as pooling keeps them).

    Returns:
        ``(Ho, Wo, C_out)``.
    """
    h, w, c = in_shape
    ho = output_size(h, kernel[0], stride[0], padding)
    wo = output_size(w, kernel[1], stride[1], padding)
    return ho, wo, (c if channels is None else channels)


def check_image_shape(in_shape, kernel, padding: str, who: str) -> tuple[int, int, int]:
    """Check one example's input shape for a windowed layer: ``(H, W, C)``, the window fits.

    Args:
        in_shape: what came (one example's shape, without ``N``).
        kernel: ``(kh, kw)``.
        padding: ``"VALID"`` or ``"SAME"`` (with ``"SAME"`` any window fits the padded input).
        who: the layer's description for messages (``"Conv2D(8, kernel_size=(3, 3), ...)"``).

    Returns:
        ``in_shape`` as a tuple of ints.

    Raises:
        ValueError: for a shape that is not ``(H, W, C)`` of positive sizes, or a window larger than the
            input under ``"VALID"`` padding, naming what came.
    """
    shape = tuple(in_shape)
    if len(shape) == 3 and all(hasattr(d, "__index__") and not isinstance(d, bool) for d in shape):
        shape = tuple(operator.index(d) for d in shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(
            f"{who} takes images, one example's input shape (H, W, C), channels last; got {shape}"
            + (": put it before fb.layers.Flatten(), not after" if len(shape) == 1 else "")
        )
    if padding == "VALID" and (kernel[0] > shape[0] or kernel[1] > shape[1]):
        raise ValueError(
            f"{who}: the window {tuple(kernel)} is larger than the input's spatial size {shape[:2]} "
            "under padding 'VALID'; use a smaller window or padding 'SAME'"
        )
    return shape


def _pads(in_hw, kernel, stride, padding):
    """``((low, high), (low, high))`` for the two spatial axes."""
    return tuple(padding_amounts(n, k, s, padding) for n, k, s in zip(in_hw, kernel, stride))


def unfold(x: jax.Array, kernel, stride, padding: str) -> jax.Array:
    """im2col: the patches of ``x`` under each window position.

    Args:
        x: ``(N, H, W, C)``.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``"VALID"`` or ``"SAME"`` (zeros).

    Returns:
        ``P: (N, Ho, Wo, kh kw, C)``, ``P[n, i, j, p kw + q, c] = x_pad[n, i sh + p, j sw + q, c]``:
        reshaped to ``(N, Ho, Wo, kh kw C)`` each row is one patch in ``(kh, kw, C)`` order. Memory:
        ``kh kw / (sh sw)`` times that of ``x`` (about).
    """
    kh, kw = kernel
    sh, sw = stride
    ho, wo, _ = out_shape(x.shape[1:], kernel, stride, padding)
    (top, bottom), (left, right) = _pads(x.shape[1:3], kernel, stride, padding)
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))) if top + bottom + left + right else x
    rows = [
        xp[:, p : p + sh * (ho - 1) + 1 : sh, q : q + sw * (wo - 1) + 1 : sw, :]  # (N, Ho, Wo, C)
        for p in range(kh)
        for q in range(kw)
    ]
    return jnp.stack(rows, axis=3)


def fold(dP: jax.Array, in_shape, kernel, stride, padding: str) -> jax.Array:
    """col2im, the transpose of ``unfold``: each patch entry added back onto the pixel it came from.

    Args:
        dP: ``(N, Ho, Wo, kh kw, C)``, e.g. ``dC/dP``.
        in_shape: one example's input shape ``(H, W, C)`` (that of ``unfold``'s ``x`` without ``N``).
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``"VALID"`` or ``"SAME"`` (the padding's entries are dropped).

    Returns:
        ``(N, H, W, C)``: ``fold(dP)[n, y, x, c] = sum`` of the entries of ``dP`` copied from pixel
        ``(y, x, c)``, so that ``fold`` is ``unfold``'s adjoint (``dC/dx`` from ``dC/dP``).
    """
    h, w, _ = in_shape
    kh, kw = kernel
    sh, sw = stride
    _, ho, wo, _, _ = dP.shape
    (top, bottom), (left, right) = _pads((h, w), kernel, stride, padding)
    hp, wp = h + top + bottom, w + left + right  # the padded image
    zero = jnp.zeros((), dP.dtype)
    acc = 0
    for p in range(kh):
        for q in range(kw):
            # The transpose of the strided slice xp[:, p::sh, q::sw] of unfold: its entries put back at rows
            # p, p + sh, ... and columns q, q + sw, ... of a zero image (lax.pad's interior padding puts
            # sh - 1 zeros between rows). Measured 2-4x faster on CPU than acc.at[slice].add (a scatter).
            acc = acc + jax.lax.pad(
                dP[:, :, :, p * kw + q, :],
                zero,
                (
                    (0, 0, 0),
                    (p, hp - p - sh * (ho - 1) - 1, sh - 1),
                    (q, wp - q - sw * (wo - 1) - 1, sw - 1),
                    (0, 0, 0),
                ),
            )
    return acc[:, top : top + h, left : left + w, :]


def shared_congruence(jt, H: jax.Array, out_shape) -> jax.Array:
    """``J^T H_n J`` per example for a Jacobian ``J`` shared by every example (a layer linear in its input
    whose ``J`` depends on its parameters only: a convolution, average pooling), with ``J`` formed once.

    Args:
        jt: ``g -> J^T g``, ``(B, *out_shape) -> (B, *in_shape)`` for any batch size ``B`` (it is given the
            ``n_out`` unit vectors as one batch).
        H: ``(N, n_out, n_out)``, ``n_out = prod(out_shape)``.
        out_shape: one example's output shape.

    Returns:
        ``(N, n_in, n_in)``; memory: ``J: (n_out, n_in)`` and one ``(N, n_in, n_out)`` intermediate.
    """
    n_out = H.shape[1]
    units = jnp.eye(n_out, dtype=H.dtype).reshape((n_out,) + tuple(out_shape))
    J = jt(units).reshape(n_out, -1)  # row o = (J^T e_o)^T: J itself, (n_out, n_in)
    JtH = jnp.einsum("oi,nop->nip", J, H)  # (N, n_in, n_out)
    return JtH @ J
