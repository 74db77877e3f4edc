"""Predictions of infinitely wide networks from their kernels, as neural-tangents'
`nt.predict` (same names, signatures, defaults and semantics; `import ntkserve_engine.predict
as predict` replaces `neural_tangents.predict`), solved in float64 and never into a silent
NaN (`factorization`).

- `gp_inference`: NNGP, NTK and NTK-GP posteriors (t = infinity);
- `gradient_descent_mse`: outputs of gradient descent on MSE at any time, given kernels;
- `gradient_descent_mse_ensemble`: mean and covariance of the trained ensemble, given a
  `kernel_fn` and data;
- `max_learning_rate`;
- `marginal_likelihood` (new): log p(y) of the NNGP or NTK-GP and its gradient with respect
  to the architecture's hyper-parameters and diag_reg.
"""

from ntkserve_engine.predict.ensemble import gradient_descent_mse_ensemble
from ntkserve_engine.predict.factorization import Factorization, FactorizationError
from ntkserve_engine.predict.gp import gp_inference
from ntkserve_engine.predict.gradient_descent import gradient_descent_mse, max_learning_rate
from ntkserve_engine.predict.likelihood import MarginalLikelihood, marginal_likelihood
from ntkserve_engine.predict.outputs import Gaussian

__all__ = [
    "Factorization",
    "FactorizationError",
    "Gaussian",
    "MarginalLikelihood",
    "gp_inference",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "marginal_likelihood",
    "max_learning_rate",
]
