"""Noise schedules: the formulas of Ho et al. (2020) and Nichol & Dhariwal (2021), respacing, bad inputs."""

import math

import pytest
import torch

from genbook.diffusion import NoiseSchedule, cosine_alphas_bar, cosine_betas, linear_betas, spaced_timesteps


def test_linear_betas_are_ho_et_al_at_T_1000_and_scaled_otherwise():
    betas = linear_betas(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert (betas.diff() > 0).all()
    short = linear_betas(100)  # Nichol & Dhariwal's scaling keeps ᾱ_T about the same
    assert short[0].item() == pytest.approx(1e-3) and short[-1].item() == pytest.approx(0.2)
    assert NoiseSchedule(short).alphas_bar[-1].item() == pytest.approx(NoiseSchedule(betas).alphas_bar[-1].item(),
                                                                         rel=0.5, abs=1e-4)


def test_cosine_alphas_bar_follows_eq_17():
    T, s = 1000, 0.008
    alphas_bar = cosine_alphas_bar(T, s)
    t = 250
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    assert alphas_bar[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-12)
    assert (alphas_bar.diff() < 0).all() and alphas_bar[-1].item() < 1e-8
    betas = cosine_betas(T, s)
    assert betas.max().item() == pytest.approx(0.999)  # clipped near t = T
    unclipped = betas < 0.999
    recomputed = NoiseSchedule(betas).alphas_bar
    assert torch.allclose(recomputed[: int(unclipped.sum())], alphas_bar[: int(unclipped.sum())], rtol=1e-10)


def test_schedule_quantities_are_consistent():
    schedule = NoiseSchedule.cosine(200)
    assert schedule.T == 200 and "cosine" in repr(schedule)
    assert torch.allclose(schedule.alphas_bar, torch.cumprod(1 - schedule.betas, 0))
    snr = schedule.snr()
    assert (snr.diff() < 0).all(), "SNR must fall as noise is added"
    assert torch.allclose(schedule.log_snr(), snr.log(), rtol=1e-9, atol=1e-9)
    assert NoiseSchedule.from_name("linear", 50).name == "linear"


def test_on_gives_cached_tensors_on_the_right_device_and_dtype():
    schedule = NoiseSchedule.linear(10)
    like = torch.zeros(3, dtype=torch.float32)
    tensors = schedule.on(like)
    assert tensors["alphas_bar"].dtype == torch.float32 and tensors["betas"].device == like.device
    assert schedule.on(like) is tensors


def test_respacing_keeps_the_marginals():
    schedule = NoiseSchedule.cosine(1000)
    timesteps = spaced_timesteps(1000, 10)
    assert timesteps[0] == 0 and timesteps[-1] == 999 and len(timesteps) == 10
    assert (timesteps.diff() > 0).all()
    short = schedule.respace(timesteps)
    assert short.T == 10
    assert torch.allclose(short.alphas_bar, schedule.alphas_bar[timesteps], rtol=1e-10)
    full = schedule.respace(torch.arange(1000))  # visiting every step changes nothing
    assert torch.allclose(full.betas, schedule.betas, rtol=1e-8)


@pytest.mark.parametrize("betas, error", [
    (torch.tensor([0.1, 1.0]), ValueError),  # β = 1 destroys the signal in one step
    (torch.tensor([0.0, 0.1]), ValueError),
    (torch.tensor([[0.1]]), ValueError),
    (torch.tensor([1, 2]), TypeError),
    ([0.1, 0.2], TypeError),
])
def test_bad_betas_are_rejected(betas, error):
    with pytest.raises(error):
        NoiseSchedule(betas)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="positive int"):
        linear_betas(0)
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule.from_name("cosin")
    with pytest.raises(ValueError, match="steps must be an int in 1..10"):
        spaced_timesteps(10, 11)
    schedule = NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="strictly increasing"):
        schedule.respace(torch.tensor([0, 5, 5]))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        schedule.respace(torch.tensor([0, 10]))
    with pytest.raises(TypeError, match="integers"):
        schedule.respace(torch.tensor([0.0, 1.0]))
