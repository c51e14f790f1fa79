"""Chapter 04's exercise checks pass on correct answers and fail, helpfully, on stubs and on common mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from genbook.exercises import ExerciseFailed
from genbook.exercises.gan import (
    check_feature_matching_loss,
    check_smoothed_discriminator_loss,
    check_value_at_optimum,
    jensen_shannon,
)


def value_at_optimum(p_data, p_model):
    d = p_data / (p_data + p_model)
    return (torch.xlogy(p_data, d) + torch.xlogy(p_model, 1 - d)).sum()


def smoothed(real_logits, fake_logits, alpha):
    return (-(alpha * F.logsigmoid(real_logits) + (1 - alpha) * F.logsigmoid(-real_logits)).mean()
            - F.logsigmoid(-fake_logits).mean())


def feature_matching(real_features, fake_features):
    return (real_features.mean(0) - fake_features.mean(0)).pow(2).sum()


def stub(*args):
    raise NotImplementedError("Exercise 4.x: write it")


def test_jensen_shannon_reference():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert jensen_shannon(p, p).item() == 0.0
    assert math.isclose(jensen_shannon(p, torch.tensor([0.0, 0.0, 1.0])).item(), math.log(2))


def test_correct_answers_pass():
    check_value_at_optimum(value_at_optimum)
    check_smoothed_discriminator_loss(smoothed)
    check_feature_matching_loss(feature_matching)


@pytest.mark.parametrize("check", [check_value_at_optimum, check_smoothed_discriminator_loss,
                                   check_feature_matching_loss])
def test_stubs_say_not_solved(check):
    with pytest.raises(ExerciseFailed, match=r"Exercise 4\.\d \(\w+\) is not solved yet: Exercise 4.x"):
        check(stub)


def test_value_at_optimum_mistakes():
    def naive_logs(p_data, p_model):  # 0 · log 0 computed as nan
        d = p_data / (p_data + p_model)
        return (p_data * d.log() + p_model * (1 - d).log()).sum()

    with pytest.raises(ExerciseFailed, match="torch.xlogy"):
        check_value_at_optimum(naive_logs)

    def averaged(p_data, p_model):
        return value_at_optimum(p_data, p_model) / len(p_data)

    with pytest.raises(ExerciseFailed, match="differs from the reference"):
        check_value_at_optimum(averaged)


def test_smoothing_mistakes():
    def unstable(real_logits, fake_logits, alpha):  # log(σ(ℓ)) underflows to -inf at ℓ = -60 in float32
        r, f = real_logits.float(), fake_logits.float()
        return (-(alpha * torch.sigmoid(r).log() + (1 - alpha) * (1 - torch.sigmoid(r)).log()).mean()
                - (1 - torch.sigmoid(f)).log().mean())

    with pytest.raises(ExerciseFailed, match="F.logsigmoid"):
        check_smoothed_discriminator_loss(unstable)

    def two_sided(real_logits, fake_logits, alpha):  # smoothing the fake targets too
        return (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, alpha))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, 1 - alpha)))

    with pytest.raises(ExerciseFailed, match="one-sided"):
        check_smoothed_discriminator_loss(two_sided)


def test_feature_matching_mistakes():
    def per_sample(real_features, fake_features):  # distance of samples, not of the means
        return (real_features[: len(fake_features)] - fake_features).pow(2).sum(1).mean()

    with pytest.raises(ExerciseFailed, match="Average the features over the batch first"):
        check_feature_matching_loss(per_sample)

    def detached(real_features, fake_features):
        return feature_matching(real_features, fake_features).detach()

    with pytest.raises(ExerciseFailed, match="no gradient"):
        check_feature_matching_loss(detached)
