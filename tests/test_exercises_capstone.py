"""Chapter 10's exercise check passes a correct precision/recall and explains the typical wrong ones."""

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.capstone import check_precision_recall_2d, problems


def radii(x, k):  # distance to the k-th nearest OTHER point: the point itself is the first of k + 1
    return torch.cdist(x, x).topk(k + 1, dim=1, largest=False).values[:, -1]


def inside(points, centres, r):
    return (torch.cdist(points, centres) <= r).any(dim=1).double().mean().item()


def precision_recall_2d(real, fake, k):
    return inside(fake, real, radii(real, k)), inside(real, fake, radii(fake, k))


def test_correct_answer_passes_in_float64_and_float32():
    check_precision_recall_2d(precision_recall_2d)
    check_precision_recall_2d(lambda real, fake, k: precision_recall_2d(real.float(), fake.float(), k))


def test_tensors_and_lists_are_accepted():
    check_precision_recall_2d(lambda *a: [torch.tensor(v) for v in precision_recall_2d(*a)])


def test_problems_have_the_character_they_claim():
    (_, real, good), (_, _, collapsed), (_, _, wide) = problems()
    p_good, r_good = precision_recall_2d(real, good, 3)
    p_col, r_col = precision_recall_2d(real, collapsed, 3)
    p_wide, r_wide = precision_recall_2d(real, wide, 3)
    assert p_good > 0.85 and r_good > 0.85
    assert p_col > 0.85 and r_col < 0.4  # collapse: looks real, covers little
    assert p_wide < 0.6 and r_wide > 0.85  # too wide: covers everything, looks unreal


def test_stub_says_not_solved():
    def stub(real, fake, k):
        raise NotImplementedError("Exercise 10.1: write precision_recall_2d")
    with pytest.raises(ExerciseFailed, match="not solved yet"):
        check_precision_recall_2d(stub)


def test_swapped_outputs_are_explained():
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_precision_recall_2d(lambda real, fake, k: precision_recall_2d(real, fake, k)[::-1])


def test_counting_the_point_itself_is_explained():
    def with_self(real, fake, k):
        r = lambda x: torch.cdist(x, x).topk(k, dim=1, largest=False).values[:, -1]  # k-th smallest includes itself
        return inside(fake, real, r(real)), inside(real, fake, r(fake))
    with pytest.raises(ExerciseFailed, match="skip the point itself"):
        check_precision_recall_2d(with_self)


def test_radii_from_the_other_set_are_explained():
    def other_radii(real, fake, k):
        return inside(fake, real, radii(fake, k)), inside(real, fake, radii(real, k))
    with pytest.raises(ExerciseFailed, match="set its centre belongs to"):
        check_precision_recall_2d(other_radii)


def test_ignoring_k_fails():
    with pytest.raises(ExerciseFailed, match="k = 1"):
        check_precision_recall_2d(lambda real, fake, k: precision_recall_2d(real, fake, 3))


def test_other_wrong_answers_fail_with_the_expected_values():
    with pytest.raises(ExerciseFailed, match="expected precision"):
        check_precision_recall_2d(lambda real, fake, k: (0.5, 0.5))
    with pytest.raises(ExerciseFailed, match="pair"):
        check_precision_recall_2d(lambda real, fake, k: 0.5)
    with pytest.raises(ExerciseFailed, match="finite number"):
        check_precision_recall_2d(lambda real, fake, k: (float("nan"), 0.5))
    with pytest.raises(ExerciseFailed, match="finite number"):
        check_precision_recall_2d(lambda real, fake, k: (torch.ones(3), 0.5))
