"""Checks for the exercises of chapter 01 (attention and the transformer).

- Exercise 1.1 :func:`check_causal_mask`: the causal mask when the queries are the last
  T_q of T_k positions (decoding with cached keys).
- Exercise 1.2 :func:`check_top_p_filter`: nucleus (top-p) filtering of logits (Holtzman et al. 2020).
- Exercise 1.3 :func:`check_shift_matrix`: the linear map that shifts sinusoidal positional
  encodings by k positions (Vaswani et al. 2017, sec. 3.5).
"""

from __future__ import annotations

import math

import torch

from ..nn.attention import causal_mask, sinusoidal_table
from .core import ExerciseFailed, call_student, expect_close

CAUSAL = "Exercise 1.1 (causal_mask)"
TOP_P = "Exercise 1.2 (top_p_filter)"
SHIFT = "Exercise 1.3 (shift_matrix)"
BOUNDARY = "probabilities (0.25, 0.5, 0.125, 0.125) with p=0.75 (the top two sum to exactly p)"


def _as_bool_mask(mask, t_q: int, t_k: int) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ExerciseFailed(f"causal_mask({t_q}, {t_k}) should return a torch.Tensor, got {type(mask).__name__}.")
    if mask.shape != (t_q, t_k):
        raise ExerciseFailed(f"causal_mask({t_q}, {t_k}) should have shape ({t_q}, {t_k}) (queries x keys), "
                             f"got {tuple(mask.shape)}.")
    if mask.dtype != torch.bool:
        raise ExerciseFailed(f"causal_mask should return a bool tensor (True = may attend), got {mask.dtype}; "
                             "comparisons such as `j <= i` give bools directly.")
    return mask


def check_causal_mask(fn) -> None:
    """``fn(t_q, t_k) -> (t_q, t_k) bool``, True where query i may attend to key j.

    The queries are the last t_q of the t_k positions, so query i sits at position
    i + t_k - t_q and may see keys j <= i + t_k - t_q.
    """
    for t_q, t_k in [(4, 4), (7, 7), (1, 1), (1, 5), (3, 8), (5, 6)]:
        got = _as_bool_mask(call_student(fn, t_q, t_k, exercise=CAUSAL), t_q, t_k)
        want = causal_mask(t_q, t_k)
        if torch.equal(got, want):
            continue
        where = f"causal_mask({t_q}, {t_k})"
        if torch.equal(got, torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q - 1)):
            raise ExerciseFailed(f"{where} hides the diagonal: a token may attend to itself (j <= i, not j < i).")
        if torch.equal(got, ~want):
            raise ExerciseFailed(f"{where} is the opposite mask: True should mark the keys a query MAY attend to.")
        if torch.equal(got, torch.ones(t_q, t_k, dtype=torch.bool).tril()):
            raise ExerciseFailed(
                f"{where} is aligned top-left: it lets the last query see only the first {t_q} keys. The queries are "
                f"the LAST {t_q} positions, so query i is at position i + {t_k - t_q} (shift the diagonal).")
        if torch.equal(got, torch.ones(t_q, t_k, dtype=torch.bool).triu()) or torch.equal(got, want.T[:t_q, :t_k]):
            raise ExerciseFailed(f"{where} lets queries see the future: keep keys j <= i (lower triangle), not j >= i.")
        bad = (got != want).nonzero()[0].tolist()
        raise ExerciseFailed(f"{where} is wrong at query {bad[0]}, key {bad[1]}: got {bool(got[tuple(bad)])}, "
                             f"expected {bool(want[tuple(bad)])}.")


def top_p_reference(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p; the rest get -inf."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum - sorted_logits.softmax(-1) >= p  # the mass before this token already reaches p
    remove[..., 0] = False  # always keep the most likely token
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def check_top_p_filter(fn) -> None:
    """``fn(logits (B, V), p) -> (B, V)``: logits of the nucleus kept, all others set to -inf."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), 0.7, "p=0.7 on probabilities (0.5, 0.3, 0.15, 0.05)"),
             (torch.log(torch.tensor([[0.1, 0.6, 0.3]])), 0.5, "p=0.5 on probabilities (0.1, 0.6, 0.3)"),
             (torch.randn(6, 50, generator=g) * 2, 0.9, "random logits (6, 50), p=0.9"),
             (torch.randn(3, 20, generator=g), 1e-6, "random logits, tiny p (only the top token)"),
             # exact in float32: the two most likely tokens hold exactly p = 0.75, so the third is outside
             (torch.log(torch.tensor([[0.25, 0.5, 0.125, 0.125]])), 0.75, BOUNDARY),
             (torch.randn(2, 10, generator=g), 1.0, "random logits, p=1 (every token)")]
    for logits, p, what in cases:
        original = logits.clone()
        got = call_student(fn, logits, p, exercise=TOP_P)
        if not torch.equal(logits, original):
            raise ExerciseFailed("top_p_filter changed its input in place; return a new tensor (e.g. masked_fill).")
        want = top_p_reference(logits, p)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"top_p_filter should return logits of shape {tuple(want.shape)}, got {shape}.")
        kept_got, kept_want = torch.isfinite(got), torch.isfinite(want)
        if torch.equal(kept_got, kept_want):
            expect_close(torch.where(kept_want, got, 0.0), torch.where(kept_want, want, 0.0),
                         what="the kept logits", hint="keep the original logits of the nucleus unchanged.")
            continue
        if not kept_got.any(-1).all():
            raise ExerciseFailed(f"{what}: a row lost every token; always keep at least the most likely one.")
        if (got == 0).any() and not (got == float("-inf")).any():
            raise ExerciseFailed(f"{what}: removed tokens should get logit -inf (probability 0), not 0.")
        if (kept_got.sum(-1) < kept_want.sum(-1)).any():
            raise ExerciseFailed(
                f"{what}: you keep {kept_got.sum(-1).tolist()} tokens per row, expected {kept_want.sum(-1).tolist()}. "
                "Keep the token whose probability makes the running sum reach p, not only those before it "
                "(shift the cumulative sum by one token).")
        if what == BOUNDARY:
            raise ExerciseFailed(
                f"{what}: you keep {kept_got.sum(-1).tolist()} tokens, expected {kept_want.sum(-1).tolist()}. "
                "Once the tokens before one already sum to p (exactly, here), that token is outside the "
                "nucleus: remove it when the mass before it is >= p, not only when it is > p.")
        raise ExerciseFailed(f"{what}: you keep {kept_got.sum(-1).tolist()} tokens per row, expected "
                             f"{kept_want.sum(-1).tolist()}: the nucleus is the smallest set of MOST likely tokens "
                             "whose probabilities sum to at least p (sort in descending order).")


def shift_reference(k: int, d_model: int) -> torch.Tensor:
    """The (d_model, d_model) M with PE[pos + k] = PE[pos] @ M: a 2x2 rotation per frequency."""
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i in range(d_model // 2):
        angle = k / 10000 ** (2 * i / d_model)
        c, s = math.cos(angle), math.sin(angle)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return m


def check_shift_matrix(fn) -> None:
    """``fn(k, d_model) -> (d_model, d_model)`` M with PE[pos + k] = PE[pos] @ M for every pos."""
    for k, d_model in [(1, 8), (5, 16), (13, 32)]:
        got = call_student(fn, k, d_model, exercise=SHIFT)
        if not isinstance(got, torch.Tensor) or got.shape != (d_model, d_model):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseFailed(f"shift_matrix({k}, {d_model}) should be a ({d_model}, {d_model}) tensor, "
                                 f"got {shape}.")
        pe = sinusoidal_table(64, d_model).double()
        shifted = pe[:-k] @ got.double()
        err = (shifted - pe[k:]).abs().max().item()
        if err < 1e-4:
            continue
        if (pe[k:] @ got.double() - pe[:-k]).abs().max().item() < 1e-4:
            raise ExerciseFailed(f"shift_matrix({k}, {d_model}) shifts by -{k} instead of +{k}: "
                                 "it is the transpose of the answer. With row vectors, PE[pos] @ M, each 2x2 block is "
                                 "[[cos, -sin], [sin, cos]] (sin(a + b) = sin a cos b + cos a sin b).")
        expect_close(got.double(), shift_reference(k, d_model), what=f"shift_matrix({k}, {d_model})", atol=1e-4,
                     hint="one 2x2 rotation per frequency w_i = 1 / 10000^(2i/d_model), by the angle k * w_i, "
                          "on dimensions (2i, 2i+1).")
