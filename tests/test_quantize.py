"""genbook.quantize: nearest code, straight-through, losses, EMA, restarts, FSQ, usage."""

import math

import pytest
import torch

from genbook.quantize import FSQ, VectorQuantizer, codebook_usage, nearest_code


def test_nearest_code_matches_a_naive_argmin():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(200, 5, generator=g), torch.randn(17, 5, generator=g)
    naive = torch.tensor([min(range(17), key=lambda k: ((zi - codebook[k]) ** 2).sum().item()) for zi in z])
    assert torch.equal(nearest_code(z, codebook), naive)


def test_quantized_latents_are_codebook_rows_and_codes_index_them():
    vq = VectorQuantizer(8, 3, ema=False)
    z_e = torch.randn(2, 3, 4, 4)
    out = vq(z_e)
    assert out.z_q.shape == z_e.shape and out.codes.shape == (2, 4, 4) and out.codes.dtype == torch.int64
    assert torch.allclose(out.z_q, vq.decode_codes(out.codes), atol=1e-6)


def test_straight_through_passes_the_gradient_unchanged():
    vq = VectorQuantizer(8, 3, ema=False)
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    weight = torch.randn(2, 3, 4, 4)
    (vq(z_e).z_q * weight).sum().backward()
    assert torch.allclose(z_e.grad, weight)


def test_losses_reach_the_codebook_only_without_ema():
    vq = VectorQuantizer(8, 3, ema=False, beta=0.25)
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = vq(z_e)
    e = vq.codebook[out.codes.flatten()]
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.allclose(out.loss, 1.25 * ((flat - e) ** 2).mean())  # codebook + β commitment
    out.loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    ema = VectorQuantizer(8, 3, ema=True)
    assert not ema.codebook.requires_grad


def test_ema_update_moves_a_code_to_the_mean_of_its_cluster():
    vq = VectorQuantizer(2, 1, ema=True, decay=0.5, eps=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
        vq.cluster_sum.copy_(vq.codebook)
    vq.train()
    z = torch.tensor([1.0, 1.0, 3.0, 9.0]).view(1, 1, 1, 4)  # three vectors near code 0, one near code 1
    vq(z)
    # N_0 = 0.5·1 + 0.5·3 = 2, m_0 = 0.5·0 + 0.5·5 = 2.5 -> e_0 = 1.25; N_1 = 1, m_1 = 0.5·10 + 0.5·9 = 9.5
    assert torch.allclose(vq.codebook.squeeze(), torch.tensor([1.25, 9.5]))


def test_dead_codes_restart_on_encoder_outputs():
    vq = VectorQuantizer(4, 2, ema=True, decay=0.5, restart_below=0.5)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
        vq.cluster_sum.copy_(vq.codebook)
    vq.train()
    z = torch.randn(1, 2, 4, 4) * 0.1
    for _ in range(3):
        vq(z)
    far = vq.codebook[1:].abs().max()
    assert far < 1.0, "dead codes far from the data were not restarted on encoder outputs"


def test_data_init_takes_encoder_outputs():
    vq = VectorQuantizer(4, 2, ema=True, init="data")
    vq.train()
    z = torch.full((1, 2, 3, 3), 7.0)
    vq(z)
    assert torch.allclose(vq.codebook, torch.full((4, 2), 7.0))


def test_fsq_rounds_to_its_grid_and_decodes_its_codes():
    fsq = FSQ([4, 5, 3])
    assert fsq.num_codes == 60 and fsq.code_dim == 3
    z = torch.randn(16, 3, 6, 6).requires_grad_()
    out = fsq(z)
    for channel, levels in enumerate((4, 5, 3)):
        values = torch.unique(out.z_q[:, channel].detach() * (levels // 2))
        assert len(values) <= levels and torch.allclose(values, values.round())
    assert out.codes.min() >= 0 and out.codes.max() < 60
    assert torch.allclose(fsq.decode_codes(out.codes), out.z_q.detach())
    out.z_q.sum().backward()
    assert (z.grad != 0).all(), "straight-through rounding must pass a gradient through the bound"


def test_fsq_uses_every_code_on_spread_inputs():
    fsq = FSQ([3, 4])
    z = torch.linspace(-4, 4, 200)
    grid = torch.stack(torch.meshgrid(z, z, indexing="ij")).unsqueeze(0)  # (1, 2, 200, 200)
    assert codebook_usage(fsq(grid).codes, 12)["used"] == 12


def test_codebook_usage_known_answers():
    codes = torch.tensor([0, 0, 1, 1])
    usage = codebook_usage(codes, 4)
    assert usage["used"] == 2 and usage["usage"] == 0.5
    assert math.isclose(usage["perplexity"], 2.0) and math.isclose(usage["entropy_bits"], 1.0)
    assert math.isclose(codebook_usage(torch.arange(8), 8)["perplexity"], 8.0)


@pytest.mark.parametrize("call, match", [
    (lambda: VectorQuantizer(0, 4), "num_codes"),
    (lambda: VectorQuantizer(4, 4, decay=1.0), "decay"),
    (lambda: VectorQuantizer(4, 4, init="zeros"), "init"),
    (lambda: VectorQuantizer(4, 3)(torch.randn(1, 4, 2, 2)), "z_e"),
    (lambda: VectorQuantizer(4, 3).decode_codes(torch.tensor([[[4]]])), "codes must lie"),
    (lambda: FSQ([1, 4]), "levels"),
    (lambda: FSQ([4, 4])(torch.randn(1, 3, 2, 2)), "z"),
    (lambda: codebook_usage(torch.tensor([0, 5]), 4), "codes must lie"),
    (lambda: codebook_usage(torch.tensor([], dtype=torch.int64), 4), "empty"),
    (lambda: codebook_usage(torch.tensor([0.0]), 4), "dtype"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
