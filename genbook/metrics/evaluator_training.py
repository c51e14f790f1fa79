"""The training loop both evaluators share: Adam with a one-cycle schedule, shuffled epochs, on the CPU.

Kept apart from ``genbook.fit`` on purpose: an evaluator must come out bit for bit the
same on every machine (CPU, float32, a fixed number of threads, no autocast), because
every chapter's FD and accuracy are measured with it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from genbook.devices import cpu_threads


def train_one_cycle(
    model: nn.Module,
    n_examples: int,
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    threads: int,
) -> torch.Tensor:
    """Train ``model`` in place on the CPU; return the loss of every step, (epochs * n_examples // batch_size,).

    loss_of_batch: example indices (batch_size,) int64 -> scalar loss. Each epoch visits the
    examples in a new random order (drawn from ``seed``) and drops the last incomplete batch.
    Schedule: one-cycle (Smith & Topin 2019) up to ``lr`` and back, over all steps.
    """
    if n_examples < batch_size:
        raise ValueError(f"need at least one batch: n_examples={n_examples} < batch_size={batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = n_examples // batch_size
    steps = epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.cpu().train()
    losses = []
    with cpu_threads(threads):
        for _ in range(epochs):
            order = torch.randperm(n_examples, generator=generator)
            for step in range(steps_per_epoch):
                loss = loss_of_batch(order[step * batch_size : (step + 1) * batch_size])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.detach())
    model.eval()
    return torch.stack(losses)
