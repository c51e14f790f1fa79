"""Checks for the exercises of chapter 03 (autoencoders, VAEs and VQ-VAE).

* Exercise 3.1: the KL divergence of two diagonal Gaussians, against ``torch.distributions``.
* Exercise 3.2: nearest-code lookup with a straight-through gradient, against a naive argmin and autograd.
* Exercise 3.3: FSQ rounding (Mentzer et al. 2024), against ``genbook.quantize.FSQ`` and its gradient.

Each check names the usual mistake when it recognises it.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence

from genbook.quantize import FSQ

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_KL = "Exercise 3.1 (gaussian_kl)"
EXERCISE_VQ = "Exercise 3.2 (vector_quantize)"
EXERCISE_FSQ = "Exercise 3.3 (fsq_round)"


def check_gaussian_kl(fn) -> None:
    """Check ``fn(mu_q, logvar_q, mu_p, logvar_p)`` = elementwise KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))."""
    g = torch.Generator().manual_seed(31)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4))
    want = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp()))
    got = call_student(fn, mu_q, logvar_q, mu_p, logvar_p, exercise=EXERCISE_KL)
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        reversed_kl = kl_divergence(Normal(mu_p, (0.5 * logvar_p).exp()), Normal(mu_q, (0.5 * logvar_q).exp()))
        if torch.allclose(got.double(), reversed_kl, atol=1e-6):
            raise ExerciseFailed(f"{EXERCISE_KL}: this is KL(p ‖ q); the KL is not symmetric, the first argument is q.")
        if torch.allclose(got.double(), 2 * want, atol=1e-6):
            raise ExerciseFailed(f"{EXERCISE_KL}: twice the KL; the formula has a factor ½.")
    expect_close(got, want, what=f"{EXERCISE_KL}: the KL", atol=1e-6,
                 hint="KL = ½ [log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²) / σ_p² − 1], elementwise; "
                      "logvar is log σ², so σ² = exp(logvar).")


def check_vector_quantize(fn) -> None:
    """Check ``fn(z, codebook) -> (z_q, codes)``: nearest codes and a straight-through gradient."""
    g = torch.Generator().manual_seed(32)
    z = torch.randn(40, 3, generator=g, dtype=torch.float64)
    codebook = torch.randn(7, 3, generator=g, dtype=torch.float64)
    want_codes = torch.tensor([min(range(7), key=lambda k: ((zi - codebook[k]) ** 2).sum().item()) for zi in z])
    z_in = z.clone().requires_grad_(True)
    out = call_student(fn, z_in, codebook, exercise=EXERCISE_VQ)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ExerciseFailed(f"{EXERCISE_VQ} should return a pair (z_q, codes).")
    z_q, codes = out
    if not isinstance(codes, torch.Tensor) or codes.shape != (40,):
        raise ExerciseFailed(f"{EXERCISE_VQ}: codes should be a tensor of shape (40,), one index per vector.")
    farthest = torch.cdist(z, codebook).argmax(1)
    if torch.equal(codes.long(), farthest) and not torch.equal(farthest, want_codes):
        raise ExerciseFailed(f"{EXERCISE_VQ}: these are the farthest codes (argmax); the nearest is the argmin.")
    if not torch.equal(codes.long(), want_codes):
        raise ExerciseFailed(f"{EXERCISE_VQ}: codes differ from the nearest codebook rows (by Euclidean distance).")
    expect_close(z_q, codebook[want_codes], what=f"{EXERCISE_VQ}: z_q", atol=1e-9,
                 hint="In the forward pass z_q must equal the nearest codebook row.")
    if not z_q.requires_grad:
        raise ExerciseFailed(f"{EXERCISE_VQ}: z_q carries no gradient back to z. Use the straight-through form "
                             "z + (e − z).detach().")
    weight = torch.randn(40, 3, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((z_q * weight).sum(), z_in, allow_unused=True)
    if grad is None or not torch.allclose(grad, weight):
        raise ExerciseFailed(f"{EXERCISE_VQ}: the gradient with respect to z must be the identity (straight-through); "
                             "z + (e − z).detach() gives exactly that, e alone gives none.")


def check_fsq_round(fn) -> None:
    """Check ``fn(z, levels) -> z_q`` against genbook's FSQ, values and straight-through gradient."""
    g = torch.Generator().manual_seed(33)
    for levels in ([3, 5], [4, 6, 3], [8, 5, 5, 5]):
        z = (torch.randn(64, len(levels), generator=g) * 1.5).requires_grad_(True)
        fsq = FSQ(levels)
        want = fsq(z.detach().T.reshape(1, len(levels), 64, 1)).z_q.reshape(len(levels), 64).T
        got = call_student(fn, z, levels, exercise=EXERCISE_FSQ)
        expect_close(got, want, what=f"{EXERCISE_FSQ}: values for levels {levels}", atol=1e-5,
                     hint="Even L needs the half-step offset (the bound minus ½, with the tanh shifted so that 0 "
                          "maps to a level); divide by floor(L / 2) at the end.")
        grad = torch.autograd.grad(got.sum(), z, allow_unused=True)[0] if got.requires_grad else None
        reference_z = z.detach().clone().requires_grad_(True)
        fsq(reference_z.T.reshape(1, len(levels), 64, 1)).z_q.sum().backward()
        if grad is None or not torch.allclose(grad, reference_z.grad, atol=1e-5):
            raise ExerciseFailed(f"{EXERCISE_FSQ}: the gradient should pass straight through the rounding "
                                 "(bounded + (round(bounded) − bounded).detach()); rounding alone has zero gradient.")
