"""Second-order training: Levenberg-Marquardt (its linear solvers and damping rules)."""

from .levenberg_marquardt import LMHistory, LMResult, auto_solver, levenberg_marquardt

__all__ = ["auto_solver", "levenberg_marquardt", "LMHistory", "LMResult"]
