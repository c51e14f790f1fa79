"""Exercise 1.2 (top_p_filter): the boundary of the nucleus and p = 1."""

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.attention import check_top_p_filter, top_p_reference


def solution(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def strict_boundary(logits, p):  # removes a token only when the mass before it EXCEEDS p
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs > p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def test_solution_passes():
    check_top_p_filter(solution)


def test_strict_boundary_is_caught_with_a_hint():
    with pytest.raises(ExerciseFailed, match=">= p"):
        check_top_p_filter(strict_boundary)


def test_reference_boundary_and_p_one():
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.125, 0.125]]))
    assert torch.isfinite(top_p_reference(logits, 0.75)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_reference(torch.randn(3, 7), 1.0)).all()
