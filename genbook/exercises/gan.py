"""Checks for the exercises of chapter 04 (generative adversarial networks).

* 4.1 ``value_at_optimum(p_data, p_model)``: V(D*, G) for two discrete distributions,
  checked against −log 4 + 2·JSD (Goodfellow et al. 2014, Theorem 1), zeros included;
* 4.2 ``smoothed_discriminator_loss(real_logits, fake_logits, alpha)``: one-sided label
  smoothing (Salimans et al. 2016, sec. 3.4), checked against PyTorch's binary cross-entropy;
* 4.3 ``feature_matching_loss(real_features, fake_features)``: feature matching
  (Salimans et al. 2016, sec. 3.1), value and gradient checked against a reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import ExerciseFailed, call_student, expect_close

EXERCISE_VALUE = "Exercise 4.1 (value_at_optimum)"
EXERCISE_SMOOTHING = "Exercise 4.2 (smoothed_discriminator_loss)"
EXERCISE_FEATURES = "Exercise 4.3 (feature_matching_loss)"


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JSD(p ‖ q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q)/2, for probability vectors (..., K), in nats.

    The independent reference of exercise 4.1: written from the definition, with
    0 · log 0 = 0 (``torch.xlogy``), in float64.
    """
    p, q = p.double(), q.double()
    m = (p + q) / 2
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    return 0.5 * kl_pm + 0.5 * kl_qm


def _probabilities(generator: torch.Generator, k: int, zeros: torch.Tensor | None = None) -> torch.Tensor:
    p = torch.rand(k, generator=generator, dtype=torch.float64) + 0.05
    if zeros is not None:
        p[zeros] = 0.0
    return p / p.sum()


def check_value_at_optimum(fn) -> None:
    """``fn(p_data, p_model) -> V(D*, G)``, a 0-d tensor, for probability vectors (K,).

    V(D*, G) = Σ_x p_data(x) log D*(x) + p_g(x) log(1 − D*(x)), D* = p_data / (p_data + p_g),
    must equal −log 4 + 2·JSD(p_data ‖ p_g): on random distributions, on distributions
    with zeros (0 · log 0 = 0), on p_data = p_g (−log 4) and on disjoint supports (0).
    """
    g = torch.Generator().manual_seed(4)
    order = torch.randperm(12, generator=g)  # p_data is 0 on order[:4], p_g on order[4:8]
    cases = [
        ("two random distributions over 10 points", _probabilities(g, 10), _probabilities(g, 10)),
        ("p_data = p_g", *(2 * [_probabilities(g, 7)])),
        ("distributions with zeros where the other is positive", _probabilities(g, 12, order[:4]),
         _probabilities(g, 12, order[4:8])),
        ("disjoint supports", torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.25, 0.75])),
    ]
    for what, p, q in cases:
        got = call_student(fn, p.clone(), q.clone(), exercise=EXERCISE_VALUE)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        want = -math.log(4) + 2 * jensen_shannon(p, q)
        hint = ""
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not torch.isfinite(got).all():
            hint = ("Where p_data(x) = 0 the term p_data(x) log D*(x) is 0 · log 0 = 0, not nan: "
                    "use torch.xlogy(p, D) or mask those points.")
        expect_close(got, want.to(got.dtype) if isinstance(got, torch.Tensor) else want, atol=1e-6, rtol=1e-6,
                     what=f"value_at_optimum on {what}", hint=hint or "Check D* = p_data / (p_data + p_g) and "
                     "that you sum (not average) over the points x.")


def check_smoothed_discriminator_loss(fn) -> None:
    """``fn(real_logits, fake_logits, alpha) -> scalar``: BCE with target α on real, 0 on fake.

    L = −mean[α log D(x) + (1 − α) log(1 − D(x))] − mean log(1 − D(G(z))), D = σ(logit);
    checked against ``F.binary_cross_entropy_with_logits`` (value and gradients), for
    logits as large as ±60 where log σ must not be computed as log(σ(·)).
    """
    g = torch.Generator().manual_seed(42)
    real = torch.cat([3 * torch.randn(62, generator=g, dtype=torch.float64), torch.tensor([60.0, -60.0])])
    fake = torch.cat([3 * torch.randn(30, generator=g, dtype=torch.float64), torch.tensor([-60.0, 60.0])])
    for alpha in (0.9, 1.0, 0.75):
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        got = call_student(fn, r, f, alpha, exercise=EXERCISE_SMOOTHING)
        r0, f0 = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        want = (F.binary_cross_entropy_with_logits(r0, torch.full_like(r0, alpha))
                + F.binary_cross_entropy_with_logits(f0, torch.zeros_like(f0)))
        hint = ("Compute log σ(ℓ) as F.logsigmoid(ℓ) and log(1 − σ(ℓ)) as F.logsigmoid(−ℓ); "
                "smooth only the real targets (one-sided), the fake target stays 0.")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        expect_close(got, want.detach(), what=f"the loss with alpha={alpha}", atol=1e-6, hint=hint)
        if not got.requires_grad:
            raise ExerciseFailed("the loss carries no gradient: build it from the logits with torch operations.")
        got.backward()
        want.backward()
        expect_close(r.grad, r0.grad, what=f"d loss / d real_logits (alpha={alpha})", atol=1e-6, hint=hint)
        expect_close(f.grad, f0.grad, what=f"d loss / d fake_logits (alpha={alpha})", atol=1e-6, hint=hint)


def check_feature_matching_loss(fn) -> None:
    """``fn(real_features, fake_features) -> scalar``: ‖mean_x f(x) − mean_z f(G(z))‖².

    real_features (B, F) and fake_features (B', F) may have different batch sizes;
    the value and its gradient with respect to the fake features are checked.
    """
    g = torch.Generator().manual_seed(7)
    real = torch.randn(64, 16, generator=g, dtype=torch.float64) + 1.0
    fake = torch.randn(48, 16, generator=g, dtype=torch.float64, requires_grad=True)
    got = call_student(fn, real.clone(), fake, exercise=EXERCISE_FEATURES)
    fake0 = fake.detach().clone().requires_grad_(True)
    want = (real.mean(0) - fake0.mean(0)).pow(2).sum()
    hint = ("Average the features over the batch first (one mean vector per batch), then take the squared "
            "Euclidean distance between the two means (a sum over features, not a mean).")
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.reshape(())
    expect_close(got, want.detach(), what="the feature matching loss", atol=1e-8, hint=hint)
    if not got.requires_grad:
        raise ExerciseFailed("the loss carries no gradient to fake_features: build it with torch operations.")
    got.backward()
    want.backward()
    expect_close(fake.grad, fake0.grad, what="d loss / d fake_features", atol=1e-8, hint=hint)
    same = call_student(fn, real.clone(), real.clone(), exercise=EXERCISE_FEATURES)
    if abs(float(same)) > 1e-10:
        raise ExerciseFailed(f"identical real and fake features should give loss 0, got {float(same):.3g}.")
