"""A thin training loop that owns the plumbing, while the chapter owns the loss.

The chapter writes ``step(batch)``: it computes the loss (the equation of the
paper, in plain sight) and returns it. ``fit`` does everything around it:
moving batches to the device, bf16 autocast on CUDA, zero_grad / backward /
optimizer step, the learning-rate schedule, gradient clipping, the EMA update,
a progress bar, and logging every ``log_every`` steps without a host
synchronisation per step.

A step that does its own updates (a GAN's two players) returns a dict of
detached numbers instead and passes ``optimizer=None``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .devices import autocast
from .devices import device as default_device
from .progress import progress


def batches(*tensors: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless random minibatches (reshuffled each epoch) from in-memory tensors of equal length.

    Yields tuples ``(t1[idx], t2[idx], ...)`` with ``idx`` of size ``batch_size``, on ``device``.
    """
    if not tensors:
        raise ValueError("batches() needs at least one tensor.")
    for k, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            hint = " (convert it with torch.from_numpy(...))" if type(t).__module__ == "numpy" else ""
            raise TypeError(f"batches(): tensors[{k}] must be a torch.Tensor, got {type(t).__name__}{hint}.")
        if t.dim() == 0:
            raise ValueError(f"batches(): tensors[{k}] must have a first (sample) dimension, got a 0-d tensor.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batches(): batch_size must be an int, got {batch_size!r} ({type(batch_size).__name__}).")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"all tensors must have the same length, got {[len(t) for t in tensors]}.")
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the dataset size), got {batch_size}.")
    dev = torch.device(device) if device is not None else default_device()
    tensors = tuple(t.to(dev) for t in tensors)
    while True:
        order = torch.randperm(n, generator=generator).to(dev)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield tuple(t[idx] for t in tensors)


class EMA(nn.Module):
    """Exponential moving average of a model's weights (Polyak averaging).

    θ_ema ← decay · θ_ema + (1 − decay) · θ after each step; sample with ``ema.model``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}.")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # One multi-tensor lerp over all parameters (the same arithmetic as a per-tensor
        # ``lerp_`` loop, bit for bit, about 5x cheaper for a UNet's ~150 small tensors).
        ema_params, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError(f"model has {len(params)} parameter tensors; the EMA copy has {len(ema_params)}.")
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


class TrainingMeter:
    """Steps and seconds of every ``fit`` run inside ``with metered() as meter:`` (the training cost)."""

    def __init__(self) -> None:
        self.steps, self.seconds = 0, 0.0

    def summary(self, model: nn.Module | None = None) -> dict:
        """Plain data: steps, seconds, ms_per_step (None before any step), parameters of ``model``, device."""
        seconds = round(self.seconds, 6)
        return {"steps": self.steps, "seconds": seconds,
                "ms_per_step": round(1000 * seconds / self.steps, 6) if self.steps else None,
                "parameters": None if model is None else sum(p.numel() for p in model.parameters()),
                "device": str(default_device())}


_meters: list[TrainingMeter] = []


@contextlib.contextmanager
def metered():
    """Measure the training cost of the ``fit`` calls inside the block (nested blocks each count them)."""
    meter = TrainingMeter()
    _meters.append(meter)
    try:
        yield meter
    finally:
        _meters.remove(meter)


class History(dict):
    """name -> list of (step, mean value over the last logging window)."""

    def last(self, name: str) -> float:
        return self[name][-1][1]


def fit(
    step: Callable[..., torch.Tensor | dict],
    data: Iterator,
    steps: int,
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    grad_clip: float | None = None,
    log_every: int = 50,
    desc: str = "train",
    amp: bool = True,
    lr_schedule: Callable[[int], float] | None = None,
) -> History:
    """Run ``steps`` training steps of ``step(*batch)``; return the logged history.

    step: returns the loss (a scalar tensor) when ``optimizer`` is given, or a dict
        of already-detached numbers when it updates the parameters itself.
    data: an iterator of batches (tuples of tensors), e.g. from :func:`batches`.
    model: the module being trained (needed for grad_clip and ema).
    lr_schedule: step index (0, 1, ...) -> learning rate, set on every parameter group
        before that step (e.g. :func:`warmup_cosine`).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"fit(): log_every must be a positive int, got {log_every!r}.")
    if lr_schedule is not None and optimizer is None:
        raise ValueError("fit(): lr_schedule needs the optimizer=... whose learning rate it sets.")
    if (grad_clip or ema) and model is None:
        raise ValueError("fit(): pass model=... to use grad_clip or ema.")
    if model is not None:
        model.train()
    dev = next(model.parameters()).device if model is not None else default_device()
    history, window, bar = History(), {}, progress(range(steps), desc=desc)
    data, started = iter(data), time.perf_counter()
    for i in bar:
        try:
            batch = next(data)
        except StopIteration:
            raise ValueError(f"fit(): data ran out after {i} of {steps} steps; pass an endless iterator such as "
                             "genbook.batches(...), or fewer steps.") from None
        batch = batch if isinstance(batch, (tuple, list)) else (batch,)
        if lr_schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule(i)
        with autocast(dev, enabled=amp):
            out = step(*batch)
        if optimizer is not None:
            if not isinstance(out, torch.Tensor) or out.dim() != 0:
                raise TypeError("with an optimizer, step() must return the scalar loss tensor.")
            optimizer.zero_grad(set_to_none=True)
            out.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            out = {"loss": out.detach()}
        elif not isinstance(out, dict):
            raise TypeError("without an optimizer, step() must return a dict of numbers (it updates itself).")
        if ema is not None:
            ema.update(model)
        for name, value in out.items():  # accumulate on the device: no sync per step
            window[name] = window.get(name, 0.0) + (value.detach().float() if torch.is_tensor(value) else value)
        if (i + 1) % log_every == 0 or i + 1 == steps:
            count = (i % log_every) + 1
            for name, total in window.items():
                mean = float(total) / count  # the one host synchronisation, at logging points only
                if not math.isfinite(mean):
                    raise FloatingPointError(
                        f"fit(): {name} is {mean} at step {i + 1} (mean of the last {count} steps): training "
                        "diverged. Lower the learning rate, clip gradients (grad_clip=...), or check the data "
                        "and the loss for NaN/inf.")
                history.setdefault(name, []).append((i + 1, mean))
            bar.set_postfix(**{name: history.last(name) for name in window})
            window = {}
    for meter in _meters:  # the last step was a logging point: the device has finished its work
        meter.steps, meter.seconds = meter.steps + steps, meter.seconds + time.perf_counter() - started
    if model is not None:
        model.eval()
    return history


def warmup_cosine(peak: float, steps: int, warmup: int, floor: float = 0.05) -> Callable[[int], float]:
    """Step -> learning rate: linear warm-up to ``peak`` over ``warmup`` steps, then a cosine
    decay to ``floor * peak`` at the last step (Loshchilov & Hutter 2017, without restarts).

    lr(s) = peak (s + 1) / warmup for s < warmup, else
    peak (floor + (1 - floor) (1 + cos(pi p)) / 2) with p = (s - warmup) / (steps - warmup).
    """
    if not (peak > 0 and isinstance(steps, int) and steps >= 1 and isinstance(warmup, int) and 0 <= warmup
            and 0 <= floor <= 1):
        raise ValueError(f"warmup_cosine needs peak > 0, steps >= 1, warmup >= 0 and floor in [0, 1]; "
                         f"got peak={peak!r}, steps={steps!r}, warmup={warmup!r}, floor={floor!r}.")

    def lr(step: int) -> float:
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    return lr


def warmup_constant(peak: float, warmup: int) -> Callable[[int], float]:
    """Step -> learning rate: linear warm-up to ``peak`` over ``warmup`` steps, then constant at ``peak``
    (the schedule of Ho et al. 2020; ``warmup=0`` is a constant rate).

    lr(s) = peak (s + 1) / warmup for s < warmup, else peak.
    """
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak < math.inf:
        raise ValueError(f"warmup_constant: peak must be a finite number > 0 (the learning rate after the "
                         f"warm-up), got {peak!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup_constant: warmup must be an int >= 0 (the number of warm-up steps), "
                         f"got {warmup!r}.")

    def lr(step: int) -> float:
        if step < warmup:
            return peak * ((step + 1) / warmup)
        return peak

    return lr


FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where torch.optim.Adam has a fused kernel (torch >= 2.4)


def adam(parameters, lr: float, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` (Kingma & Ba 2015), fused where every parameter lives on a device with a fused kernel.

    Fusing computes the same update in one kernel over all the parameters instead of a loop of kernels over
    them (a few ms less per step for a small UNet on a CPU). ``parameters``: tensors or parameter groups, as
    for torch.optim.Adam; ``kwargs`` go to it (an explicit ``fused=`` or ``foreach=`` wins). AdamW (Loshchilov &
    Hutter 2019) is ``adam(..., weight_decay=w, decoupled_weight_decay=True)``, as torch.optim.AdamW is.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"adam: lr must be a finite number > 0, got {lr!r}.")
    if isinstance(parameters, torch.Tensor):
        raise TypeError("adam: parameters must be an iterable of tensors or of parameter groups (dicts), "
                        "e.g. model.parameters(), got a single tensor; wrap it in a list.")
    parameters = list(parameters)
    groups = [g for g in parameters if isinstance(g, dict)]
    tensors = [p for g in groups for p in g.get("params", [])] + [p for p in parameters if not isinstance(p, dict)]
    if not tensors:
        raise ValueError("adam: parameters is empty; pass model.parameters() of a model that has some, "
                         "or parameter groups with tensors in their 'params'.")
    if "fused" not in kwargs and "foreach" not in kwargs:
        fusable = all(isinstance(p, torch.Tensor) and p.device.type in FUSED_ADAM_DEVICES
                      and p.is_floating_point() for p in tensors)
        kwargs["fused"] = True if fusable else None
    return torch.optim.Adam(parameters, lr=lr, **kwargs)
