"""The checks of chapter 03's exercises accept the solutions and reject the usual mistakes."""

import pytest
import torch

from genbook.exercises.core import ExerciseFailed
from genbook.exercises.vqvae import check_fsq_round, check_gaussian_kl, check_vector_quantize


def kl_right(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)


def kl_reversed(mu_q, logvar_q, mu_p, logvar_p):
    return kl_right(mu_p, logvar_p, mu_q, logvar_q)


def kl_no_half(mu_q, logvar_q, mu_p, logvar_p):
    return 2 * kl_right(mu_q, logvar_q, mu_p, logvar_p)


def kl_logvar_as_std(mu_q, logvar_q, mu_p, logvar_p):  # treats logvar as log σ
    return kl_right(mu_q, 2 * logvar_q, mu_p, 2 * logvar_p)


def kl_to_standard_normal(mu_q, logvar_q, mu_p, logvar_p):  # ignores the prior's parameters
    return kl_right(mu_q, logvar_q, torch.zeros_like(mu_p), torch.zeros_like(logvar_p))


def kl_unsolved(*args):
    raise NotImplementedError("write the KL")


def test_kl_check_accepts_the_solution():
    check_gaussian_kl(kl_right)


@pytest.mark.parametrize("wrong, match", [
    (kl_reversed, "KL\\(p"), (kl_no_half, "factor"), (kl_logvar_as_std, "differs"),
    (kl_to_standard_normal, "differs"), (kl_unsolved, "not solved"),
])
def test_kl_check_rejects(wrong, match):
    with pytest.raises(ExerciseFailed, match=match):
        check_gaussian_kl(wrong)


def vq_right(z, codebook):
    codes = torch.cdist(z, codebook).argmin(1)
    e = codebook[codes]
    return z + (e - z).detach(), codes


def vq_argmax(z, codebook):
    codes = torch.cdist(z, codebook).argmax(1)
    e = codebook[codes]
    return z + (e - z).detach(), codes


def vq_no_straight_through(z, codebook):
    codes = torch.cdist(z, codebook).argmin(1)
    return codebook[codes], codes


def vq_dot_product(z, codebook):  # nearest by inner product, not by distance
    codes = (z @ codebook.T).argmax(1)
    e = codebook[codes]
    return z + (e - z).detach(), codes


def vq_returns_z(z, codebook):
    return z, torch.cdist(z, codebook).argmin(1)


def test_vq_check_accepts_the_solution():
    check_vector_quantize(vq_right)


@pytest.mark.parametrize("wrong, match", [(vq_argmax, "argmax"), (vq_no_straight_through, "gradient"),
                                          (vq_dot_product, "differ"), (vq_returns_z, "z_q")])
def test_vq_check_rejects(wrong, match):
    with pytest.raises(ExerciseFailed, match=match):
        check_vector_quantize(wrong)


def fsq_right(z, levels):
    L = torch.tensor(levels, dtype=z.dtype)
    half = (L - 1) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    bounded = half * torch.tanh(z + torch.atanh(offset / half)) - offset
    return (bounded + (bounded.round() - bounded).detach()) / torch.div(L, 2, rounding_mode="floor")


def fsq_no_offset(z, levels):
    L = torch.tensor(levels, dtype=z.dtype)
    bounded = (L - 1) / 2 * torch.tanh(z)
    return (bounded + (bounded.round() - bounded).detach()) / torch.div(L, 2, rounding_mode="floor")


def fsq_no_straight_through(z, levels):
    return fsq_right(z, levels).detach().round_() * 0 + fsq_right(z, levels).detach()


def fsq_not_rescaled(z, levels):
    L = torch.tensor(levels, dtype=z.dtype)
    return fsq_right(z, levels) * torch.div(L, 2, rounding_mode="floor")


def test_fsq_check_accepts_the_solution():
    check_fsq_round(fsq_right)


@pytest.mark.parametrize("wrong, match", [(fsq_no_offset, "offset"), (fsq_no_straight_through, "gradient"),
                                          (fsq_not_rescaled, "differs")])
def test_fsq_check_rejects(wrong, match):
    with pytest.raises(ExerciseFailed, match=match):
        check_fsq_round(wrong)
