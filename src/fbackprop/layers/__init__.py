"""Layers: each kind a few pure functions (forward, backward, R-operator, second-order backward,
readouts), and the combinators that walk them (``Serial``, ``Residual``). The protocol a layer
follows, so that you can write your own, is in ``fbackprop.layers.base``."""

from .activation import Activation
from .autodiff import Autodiff
from .conv2d import Conv2D
from .dense import Dense
from .flatten import Flatten
from .network import Network
from .norm import LayerNorm
from .pool import AvgPool2D, MaxPool2D
from .residual import Residual
from .serial import Serial

__all__ = ["Activation", "AvgPool2D", "Conv2D", "Dense", "Flatten", "LayerNorm", "MaxPool2D", "Network"]
__all__ += ["Autodiff", "Residual", "Serial"]
