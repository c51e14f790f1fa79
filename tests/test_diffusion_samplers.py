"""The forward process and the DDPM / DDIM samplers: closed form, exact-score sampling, determinism, bad inputs."""

import math

import pytest
import torch

from genbook.diffusion import NoiseSchedule, ddim_sample, ddpm_sample, predict_x0, q_sample, q_step, spaced_timesteps

MU, S = 0.2, 0.25  # toy data: every pixel ~ N(MU, S²), independent (clamping to [-1, 1] cuts < 0.1%)


def gaussian_eps_model(schedule):
    """The exact ε-prediction E[ε | x_t] for data N(MU, S²): what a perfectly trained network outputs.

    x_t = √ᾱ x_0 + √(1−ᾱ) ε with x_0 ~ N(MU, S²), so (x_t, ε) are jointly Gaussian and
    E[ε | x_t] = √(1−ᾱ) (x_t − √ᾱ MU) / (ᾱ S² + 1 − ᾱ).
    """
    calls = []

    def eps_model(x, t):
        calls.append(int(t[0]))
        a = schedule.alphas_bar.to(x.dtype)[t].reshape(-1, *[1] * (x.dim() - 1))
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)

    eps_model.calls = calls
    return eps_model


def test_closed_form_matches_iterating_the_chain():
    """q(x_t | x_0) of eq. 4 against t steps of eq. 2, on 40,000 samples: means and variances agree."""
    schedule = NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    n = 20_000
    x0 = torch.full((n, 1), 0.8)
    x = x0.clone()
    for t in range(100):
        x = q_step(x, t, torch.randn(x.shape, generator=g), schedule)
        if t in (0, 9, 49, 99):
            closed = q_sample(x0, t, torch.randn(x.shape, generator=g), schedule)
            a = schedule.alphas_bar[t].item()
            mean, var = math.sqrt(a) * 0.8, 1 - a
            se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))  # standard errors
            for sample in (x, closed):
                assert abs(sample.mean().item() - mean) < 5 * se_mean
                assert abs(sample.var().item() - var) < 5 * se_var


def test_q_sample_shapes_broadcast_and_predict_x0_inverts_it():
    schedule = NoiseSchedule.cosine(50)
    x0, noise = torch.rand(4, 1, 6, 6) * 2 - 1, torch.randn(4, 1, 6, 6)
    t = torch.tensor([0, 10, 20, 49])
    xt = q_sample(x0, t, noise, schedule)
    assert xt.shape == x0.shape
    assert torch.allclose(predict_x0(xt, t, noise, schedule), x0, atol=1e-3)
    same = q_sample(x0, 7, noise, schedule)  # one int for the whole batch
    assert torch.allclose(same, q_sample(x0, torch.full((4,), 7), noise, schedule))


@pytest.mark.parametrize("t, error, match", [
    (torch.tensor([0, 1, 2, 50]), ValueError, r"0\.\.49"),
    (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, "integer timestep"),
    (torch.tensor([0, 1]), ValueError, "shape"),
])
def test_q_sample_rejects_bad_timesteps(t, error, match):
    schedule = NoiseSchedule.cosine(50)
    with pytest.raises(error, match=match):
        q_sample(torch.zeros(4, 1, 2, 2), t, torch.zeros(4, 1, 2, 2), schedule)


def test_q_sample_rejects_noise_of_another_shape():
    with pytest.raises(ValueError, match="noise must have shape"):
        q_sample(torch.zeros(4, 1, 2, 2), 3, torch.zeros(4, 1, 2, 3), NoiseSchedule.cosine(50))


def exact_moments(schedule, steps, sampler, variance="posterior", eta=0.0):
    """Mean and variance of a sampler's output for data N(MU, S²), propagated exactly through its linear steps.

    With the exact ε of Gaussian data every step is x' = P x + Q + σ z, so from x_T ~ N(0, 1) the
    moments follow m' = P m + Q, v' = P² v + σ² (the paper's equations, written for one number).
    """
    timesteps = spaced_timesteps(schedule.T, steps)
    alphas_bar = schedule.alphas_bar[timesteps].tolist()
    m, v = 0.0, 1.0
    for i in reversed(range(len(timesteps))):
        a, ap = alphas_bar[i], (alphas_bar[i - 1] if i > 0 else 1.0)
        k = math.sqrt(1 - a) / (a * S**2 + 1 - a)  # ε(x) = k x + e0
        e0 = -k * math.sqrt(a) * MU
        if sampler == "ddim":  # eq. 12 with σ of eq. 16
            sigma = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
            c_x0, c_eps = math.sqrt(ap), math.sqrt(1 - ap - sigma**2)
            P = c_x0 * (1 - math.sqrt(1 - a) * k) / math.sqrt(a) + c_eps * k
            Q = (-c_x0 * math.sqrt(1 - a) / math.sqrt(a) + c_eps) * e0
        else:  # Algorithm 2 on the respaced chain
            beta = 1 - a / ap
            sigma = math.sqrt(beta if variance == "beta" else (1 - ap) / (1 - a) * beta)
            P = (1 - beta / math.sqrt(1 - a) * k) / math.sqrt(1 - beta)
            Q = -beta / math.sqrt(1 - a) * e0 / math.sqrt(1 - beta)
        m, v = P * m + Q, P**2 * v + sigma**2
    return m, v


@pytest.mark.parametrize("sampler, steps, variance", [
    ("ddim", 4, None), ("ddpm", 4, "posterior"), ("ddim", 10, None), ("ddpm", 30, "beta"),  # (4 steps with β: clamped)
])
def test_few_step_samplers_match_their_exact_output_distribution(sampler, steps, variance):
    """Few steps do not reproduce the data exactly; they must reproduce what their equations imply."""
    schedule = NoiseSchedule.cosine(1000)
    model = gaussian_eps_model(schedule)
    g = torch.Generator().manual_seed(1)
    shape = (5000, 1, 2, 2)
    if sampler == "ddpm":
        x = ddpm_sample(model, shape, schedule, steps, variance=variance, generator=g, device="cpu")
    else:
        x = ddim_sample(model, shape, schedule, steps, generator=g, device="cpu")
    assert x.shape == shape and x.min() >= -1 and x.max() <= 1
    assert model.calls == spaced_timesteps(1000, steps).flip(0).tolist()  # τ_S, ..., τ_1 = 0: the original indices
    mean, var = exact_moments(schedule, steps, sampler, variance)
    n = x.numel()
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1)) + 1e-4  # + clamping's tiny cut


@pytest.mark.parametrize("sampler, variance", [("ddim", None), ("ddpm", "posterior"), ("ddpm", "beta")])
def test_many_step_samplers_recover_gaussian_data_with_the_exact_eps(sampler, variance):
    """With the exact ε of Gaussian data and every step of a T = 250 chain, samples follow the data."""
    schedule = NoiseSchedule.cosine(250)
    model = gaussian_eps_model(schedule)
    g = torch.Generator().manual_seed(2)
    shape = (2500, 1, 2, 2)
    if sampler == "ddpm":
        x = ddpm_sample(model, shape, schedule, variance=variance, generator=g, device="cpu")  # all T steps
    else:
        x = ddim_sample(model, shape, schedule, 250, generator=g, device="cpu")
    assert len(model.calls) == 250
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.04)  # measured: -0.8 % (DDIM), -2.3 %, +1.2 % (ancestral)


def test_ddim_eta_one_is_ancestral_sampling_with_posterior_variance():
    """Song et al. (2021): η = 1 gives the DDPM posterior; both draw noise in the same order."""
    schedule = NoiseSchedule.cosine(100)
    model = gaussian_eps_model(schedule)
    a = ddim_sample(model, (8, 1, 4, 4), schedule, 10, eta=1.0, generator=torch.Generator().manual_seed(3),
                    device="cpu")
    b = ddpm_sample(model, (8, 1, 4, 4), schedule, 10, variance="posterior", generator=torch.Generator().manual_seed(3),
                    device="cpu")
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_is_deterministic_and_returns_its_trajectory():
    schedule = NoiseSchedule.cosine(100)
    model = gaussian_eps_model(schedule)
    x, path = ddim_sample(model, (3, 1, 4, 4), schedule, 5, generator=torch.Generator().manual_seed(4), device="cpu",
                          return_trajectory=True)
    again = ddim_sample(model, (3, 1, 4, 4), schedule, 5, generator=torch.Generator().manual_seed(4), device="cpu")
    assert torch.equal(x, again) and len(path) == 6 and path[0].shape == (3, 1, 4, 4)
    _, path = ddpm_sample(model, (3, 1, 4, 4), schedule, 7, device="cpu", return_trajectory=True)
    assert len(path) == 8


def test_samplers_reject_bad_inputs():
    schedule = NoiseSchedule.cosine(20)
    model = gaussian_eps_model(schedule)
    with pytest.raises(ValueError, match="variance"):
        ddpm_sample(model, (2, 1, 4, 4), schedule, variance="large", device="cpu")
    with pytest.raises(ValueError, match=r"steps must be an int in 1\.\.20"):
        ddim_sample(model, (2, 1, 4, 4), schedule, 21, device="cpu")
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(model, (2, 1, 4, 4), schedule, 5, eta=-1.0, device="cpu")
    with pytest.raises(TypeError, match="callable"):
        ddim_sample("unet", (2, 1, 4, 4), schedule, 5, device="cpu")
    with pytest.raises(TypeError, match="NoiseSchedule"):
        ddim_sample(model, (2, 1, 4, 4), schedule.betas, 5, device="cpu")
    with pytest.raises(ValueError, match="must return a tensor of x_t's shape"):
        ddim_sample(lambda x, t: x[:, :, :2], (2, 1, 4, 4), schedule, 5, device="cpu")
    with pytest.raises(ValueError, match="shape must be"):
        ddpm_sample(model, (0, 1, 4, 4), schedule, 5, device="cpu")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_clipping_x0_changes_nothing_in_range_and_stops_a_blow_up(sampler):
    """Eq. 7 with x̂_0 equals Algorithm 2's mean; clipping x̂_0 only matters when the network is wrong near ᾱ ≈ 0."""
    schedule = NoiseSchedule.cosine(1000)  # ᾱ_T ≈ 2e-9: ε errors are magnified by 1/√ᾱ_T ≈ 2e4
    exact = gaussian_eps_model(schedule)
    run = ddpm_sample if sampler == "ddpm" else ddim_sample
    options = dict(variance="posterior") if sampler == "ddpm" else {}

    def sample(model, clip):
        _, path = run(model, (200, 1, 2, 2), schedule, 20, clip_x0=clip, generator=torch.Generator().manual_seed(5),
                      device="cpu", return_trajectory=True, **options)
        return path[-1]  # x_0 before the final clamp

    assert torch.allclose(sample(exact, True), sample(exact, False), atol=1e-4)
    wrong = lambda x, t: exact(x.clamp(-4, 4), t) + 0.05  # noqa: E731  (slightly wrong, and bounded like a network)
    assert sample(wrong, False).abs().max() > 10
    assert sample(wrong, True).abs().max() < 2


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_a_given_x_T_replaces_the_first_draw_and_the_generator_keeps_the_step_noise(sampler):
    """x_T= shares one start between samplers; the generator then supplies only the per-step noise."""
    schedule = NoiseSchedule.cosine(100)
    model = gaussian_eps_model(schedule)
    shape = (4, 1, 3, 3)
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(shape, generator=g)  # the first draw of the default path
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    options = dict(eta=1.0) if sampler == "ddim" else dict(variance="posterior")
    default = run(model, shape, schedule, 6, generator=torch.Generator().manual_seed(5), device="cpu", **options)
    given = run(model, shape, schedule, 6, generator=g, device="cpu", x_T=x_T, **options)  # g continues after x_T
    assert torch.equal(default, given)
    with pytest.raises(ValueError, match="x_T"):
        run(model, shape, schedule, 6, device="cpu", x_T=torch.zeros(2, 1, 3, 3), **options)
