"""Micro-benchmark: genbook's attention (fused ``scaled_dot_product_attention``) against the naive version.

    python -m genbook.nn.bench_attention [--lengths 128 256 512 1024] [--repeats 5]

Times the forward and backward pass of causal multi-head self-attention, as a
GPT uses it: the naive version materialises the (T, T) weights (Vaswani et al.
2017, eq. 1, written out), genbook's :class:`~genbook.nn.MultiHeadAttention`
calls the fused kernel. Both get the same projections, so only the attention
core differs. Prints the median of several repeats and the ratio naive / genbook
(above 1: genbook is faster). Runs on ``genbook.device()``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ..devices import device as default_device
from .attention import MultiHeadAttention, causal_mask, naive_attention


class NaiveMultiHeadAttention(MultiHeadAttention):
    """The same module with the attention core written out (softmax of the full score matrix)."""

    def forward(self, x, context=None, *, key_padding_mask=None, causal=False):
        b, t, _ = x.shape
        q = self.split_heads(self.q_proj(x))
        k, v = map(self.split_heads, self.kv_proj(x).chunk(2, dim=-1))
        mask = causal_mask(t, t, x.device) if causal else None
        out = naive_attention(q, k, v, mask).transpose(1, 2).reshape(b, t, self.d_model)
        return self.out_proj(out)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def time_module(module: torch.nn.Module, x: torch.Tensor, repeats: int, backward: bool = True) -> float:
    """Median seconds of one forward (+ backward) pass of causal self-attention, after a warm-up."""
    times = []
    for i in range(repeats + 2):
        _sync(x.device)
        start = time.perf_counter()
        out = module(x, causal=True)
        if backward:
            out.sum().backward()
        _sync(x.device)
        if i >= 2:  # the first calls pick kernels and allocate
            times.append(time.perf_counter() - start)
    return statistics.median(times)


CPU_LENGTHS = (128, 256, 512, 1024)
GPU_LENGTHS = (512, 1024, 2048, 4096)


def run(lengths=None, batch_size: int = 8, d_model: int = 128, n_heads: int = 4,
        repeats: int = 5, dev: torch.device | str | None = None) -> list[dict]:
    """One row per sequence length: {"T", "naive_ms", "genbook_ms", "ratio"}.

    lengths: default CPU_LENGTHS on a CPU, GPU_LENGTHS on an accelerator. On CUDA
    both run in bfloat16, the precision the fused FlashAttention kernel needs.
    """
    dev = torch.device(dev) if dev is not None else default_device()
    lengths = lengths or (CPU_LENGTHS if dev.type == "cpu" else GPU_LENGTHS)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-4
    torch.manual_seed(0)
    fused = MultiHeadAttention(d_model, n_heads).to(dev, dtype)
    naive = NaiveMultiHeadAttention(d_model, n_heads).to(dev, dtype)
    naive.load_state_dict(fused.state_dict())
    rows = []
    for t in lengths:
        x = torch.randn(batch_size, t, d_model, device=dev, dtype=dtype, requires_grad=True)
        with torch.no_grad():
            err = (fused(x, causal=True) - naive(x, causal=True)).abs().max().item()
        if err > tolerance:
            raise AssertionError(f"fused and naive attention disagree by {err:.3g} at T={t}.")
        naive_s = time_module(naive, x, repeats)
        fused_s = time_module(fused, x, repeats)
        rows.append({"T": t, "naive_ms": 1e3 * naive_s, "genbook_ms": 1e3 * fused_s, "ratio": naive_s / fused_s})
    return rows


def format_table(rows: list[dict], dev: torch.device | str, batch_size: int, d_model: int, n_heads: int,
                 repeats: int) -> str:
    lines = [f"attention micro-benchmark on {dev}: causal self-attention, forward + backward, "
             f"batch {batch_size}, d_model {d_model}, {n_heads} heads (median of {repeats} repeats)",
             f"{'seq len':>8} {'naive ms':>10} {'genbook ms':>11} {'naive/genbook':>14}"]
    lines += [f"{r['T']:>8} {r['naive_ms']:>10.2f} {r['genbook_ms']:>11.2f} {r['ratio']:>14.2f}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help=f"sequence lengths (default {CPU_LENGTHS} on CPU, {GPU_LENGTHS} on GPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.lengths or ()) or args.repeats < 1:
        parser.error("lengths and repeats must be positive.")
    dev = default_device()
    rows = run(args.lengths, args.batch_size, args.d_model, args.heads, args.repeats, dev)
    print(format_table(rows, dev, args.batch_size, args.d_model, args.heads, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
