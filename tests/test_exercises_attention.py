"""Chapter 01's exercise checks pass on correct answers and fail, helpfully, on stubs and typical mistakes."""

import math

import pytest
import torch

from genbook.exercises import ExerciseFailed
from genbook.exercises.attention import (
    check_causal_mask,
    check_shift_matrix,
    check_top_p_filter,
    shift_reference,
    top_p_reference,
)


def stub(*args):
    raise NotImplementedError("write this function")


# --- Exercise 1.1: causal mask with cached keys ---------------------------------------------

def causal_mask(t_q, t_k):
    return torch.arange(t_k)[None, :] <= torch.arange(t_q)[:, None] + (t_k - t_q)


def test_causal_mask_solution_passes():
    check_causal_mask(causal_mask)


@pytest.mark.parametrize("wrong, message", [
    (stub, "Exercise 1.1 .* not solved yet"),
    (lambda t_q, t_k: torch.ones(t_q, t_k, dtype=torch.bool).tril(), "aligned top-left"),
    (lambda t_q, t_k: ~causal_mask(t_q, t_k), "opposite mask"),
    (lambda t_q, t_k: torch.ones(t_q, t_k).tril(t_k - t_q), "bool tensor"),
    (lambda t_q, t_k: torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q - 1), "hides the diagonal"),
    (lambda t_q, t_k: torch.ones(t_k, t_k, dtype=torch.bool).tril(), r"shape \(1, 5\)"),
    (lambda t_q, t_k: torch.ones(t_q, t_k, dtype=torch.bool).triu(t_k - t_q), "see the future"),
])
def test_causal_mask_mistakes_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_causal_mask(wrong)


# --- Exercise 1.2: nucleus (top-p) filtering ----------------------------------------------------

def top_p_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def test_top_p_solution_passes_and_reference_is_right():
    check_top_p_filter(top_p_filter)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_reference(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_reference(logits, 1.0)).all()


def drops_the_crossing_token(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    remove = sorted_logits.softmax(-1).cumsum(-1) >= p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def zeroes_instead_of_minus_inf(logits, p):
    out = top_p_filter(logits, p)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def ascending_sort(logits, p):
    sorted_logits, order = logits.sort(dim=-1)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def in_place(logits, p):
    logits.masked_fill_(~torch.isfinite(top_p_filter(logits, p)), float("-inf"))
    return logits


@pytest.mark.parametrize("wrong, message", [
    (stub, "Exercise 1.2 .* not solved yet"),
    (drops_the_crossing_token, "Keep the token whose probability makes the running sum reach p"),
    (zeroes_instead_of_minus_inf, "-inf .* not 0"),
    (ascending_sort, "MOST likely"),
    (in_place, "in place"),
    (lambda logits, p: logits[:, :2], "shape"),
    (lambda logits, p: top_p_filter(logits, p) * 2, "kept logits"),
])
def test_top_p_mistakes_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_top_p_filter(wrong)


# --- Exercise 1.3: the shift matrix of sinusoidal encodings -------------------------------------

def shift_matrix(k, d_model):
    m = torch.zeros(d_model, d_model)
    for i in range(d_model // 2):
        a = k / 10000 ** (2 * i / d_model)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return m


def test_shift_matrix_solution_passes():
    check_shift_matrix(shift_matrix)
    assert torch.allclose(shift_reference(3, 8).float(), shift_matrix(3, 8), atol=1e-6)


@pytest.mark.parametrize("wrong, message", [
    (stub, "Exercise 1.3 .* not solved yet"),
    (lambda k, d: shift_matrix(k, d).T, "shifts by -"),
    (lambda k, d: torch.eye(d), "differs from the reference"),
    (lambda k, d: torch.eye(d + 1), r"should be a \(8, 8\) tensor"),
    (lambda k, d: shift_matrix(k + 1, d), "one 2x2 rotation per frequency"),
])
def test_shift_matrix_mistakes_are_explained(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_shift_matrix(wrong)
