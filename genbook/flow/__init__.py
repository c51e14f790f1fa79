"""Flow matching (chapter 07): Gaussian probability paths, the CFM loss, ODE solvers and exact 2D likelihoods.

Lipman, Chen, Ben-Hamu, Nickel & Le (2023), "Flow Matching for Generative Modeling";
Liu, Gong & Liu (2023), "Flow Straight and Fast" (rectified flow);
Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential Equations";
Tong et al. (2024), "Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport".
Convention: t = 0 is noise N(0, I), t = 1 is data.
"""

from .coupling import ot_cost_matrix, ot_couple, ot_pairing, transport_cost
from .paths import GaussianPath, OTPath, VPPath, cfm_loss, log_normal
from .solvers import NFE_PER_STEP, ORDER, divergence, log_likelihood, nfe, odeint

__all__ = [
    "NFE_PER_STEP", "ORDER", "GaussianPath", "OTPath", "VPPath", "cfm_loss", "divergence", "log_likelihood",
    "log_normal", "nfe", "odeint", "ot_cost_matrix", "ot_couple", "ot_pairing", "transport_cost",
]
