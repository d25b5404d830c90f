"""Second-order training: Levenberg-Marquardt (its linear solvers and damping rules), damped Newton,
Gauss-Newton with line search, Hessian-free, K-FAC (an optax transformation), and LM for any
residual function."""

from .ekfac import EKFACState, ekfac
from .gauss_newton import gauss_newton
from .hessian_free import hessian_free
from .kfac import KFACState, kfac
from .least_squares import least_squares
from .levenberg_marquardt import LMHistory, LMResult, auto_solver, levenberg_marquardt, newton

__all__ = [
    "auto_solver",
    "ekfac",
    "EKFACState",
    "gauss_newton",
    "hessian_free",
    "kfac",
    "KFACState",
    "least_squares",
    "levenberg_marquardt",
    "LMHistory",
    "LMResult",
    "newton",
]
