"""Second-order training: Levenberg-Marquardt (its linear solvers and damping rules), damped Newton,
Gauss-Newton with line search, Hessian-free, K-FAC (an optax transformation), and LM for any
residual function; and the parts they are assembled from (solve parts, damping rules, the line
search, the one loop)."""

from .damped_newton import newton
from .damping import Marquardt, Nielsen, TrustRegion
from .ekfac import EKFACState, ekfac
from .gauss_newton import gauss_newton
from .hessian_free import hessian_free
from .kfac import KFACState, kfac
from .least_squares import least_squares
from .levenberg_marquardt import LMHistory, LMResult, auto_solver, levenberg_marquardt
from .line_search import Backtracking
from .solves import CG, KFAC, Accumulate, Dense, Dual, Newton

__all__ = [
    "Accumulate",
    "auto_solver",
    "Backtracking",
    "CG",
    "Dense",
    "Dual",
    "ekfac",
    "EKFACState",
    "gauss_newton",
    "hessian_free",
    "kfac",
    "KFAC",
    "KFACState",
    "least_squares",
    "levenberg_marquardt",
    "LMHistory",
    "LMResult",
    "Marquardt",
    "newton",
    "Newton",
    "Nielsen",
    "TrustRegion",
]
