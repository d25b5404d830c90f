"""Layers: each kind a few pure functions (forward, backward, R-operator, second-order backward,
readouts), and the combinators that walk them (``Serial``, ``Residual``). The protocol a layer
follows, so that you can write your own, is in ``fbackprop.layers.base``."""

from .activation import Activation
from .base import Layer
from .dense import Dense
from .network import Network
from .norm import LayerNorm
from .residual import Residual
from .serial import Serial

__all__ = ["Activation", "Dense", "Layer", "LayerNorm", "Network", "Residual", "Serial"]
