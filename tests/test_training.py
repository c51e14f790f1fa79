"""The training loop helper, minibatches, EMA and the plotting helpers."""

import matplotlib

matplotlib.use("Agg")
import pytest
import torch
from torch import nn

import genbook


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROGRESS", "off")


def test_fit_learns_a_linear_map():
    g = genbook.seed_everything(0)
    x = torch.randn(512, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = lambda xb, yb: ((model(xb) - yb) ** 2).mean()  # noqa: E731
    history = genbook.fit(step, genbook.batches(x, y, batch_size=64, generator=g, device="cpu"), 300,
                          model=model, optimizer=opt, log_every=100)
    assert [s for s, _ in history["loss"]] == [100, 200, 300]
    assert history.last("loss") < 1e-4 < history["loss"][0][1]
    assert not model.training


def test_fit_logs_the_window_mean():
    values = iter(range(1, 7))
    history = genbook.fit(lambda b: {"v": float(next(values))}, iter(lambda: (0,), None), 6, log_every=4)
    assert history["v"] == [(4, 2.5), (6, 5.5)]  # mean of 1..4, then of 5..6


def test_fit_with_ema_and_clip():
    model = nn.Linear(2, 1)
    ema = genbook.EMA(model, decay=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = genbook.batches(torch.ones(8, 2), batch_size=4, device="cpu")
    genbook.fit(lambda x: model(x).sum() * 100, data, 3, model=model, optimizer=opt, ema=ema, grad_clip=1.0)
    assert not torch.equal(ema.model.weight, model.weight)
    assert not ema.model.weight.requires_grad


def test_fit_bad_arguments():
    data = genbook.batches(torch.ones(8, 2), batch_size=4, device="cpu")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        genbook.fit(lambda x: {}, data, 0)
    with pytest.raises(TypeError, match="must return the scalar loss tensor"):
        model = nn.Linear(2, 1)
        genbook.fit(lambda x: model(x), data, 1, model=model, optimizer=torch.optim.SGD(model.parameters(), 0.1))
    with pytest.raises(TypeError, match="must return a dict of numbers"):
        genbook.fit(lambda x: 1.0, data, 1)
    with pytest.raises(ValueError, match="pass model="):
        genbook.fit(lambda x: {}, data, 1, grad_clip=1.0)


def test_batches_cover_an_epoch_and_check_lengths():
    x = torch.arange(10)
    first = [b[0] for _, b in zip(range(5), genbook.batches(x, batch_size=2, device="cpu"))]
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="same length"):
        next(genbook.batches(torch.ones(3), torch.ones(4), batch_size=2))
    with pytest.raises(ValueError, match="batch_size must be in 1..3"):
        next(genbook.batches(torch.ones(3), batch_size=5))


def test_ema_average():
    model = nn.Linear(1, 1, bias=False)
    ema = genbook.EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(ema.model.weight.item() + 1.0)
    before = ema.model.weight.item()
    ema.update(model)
    assert ema.model.weight.item() == pytest.approx(before + 0.1)
    with pytest.raises(ValueError, match="decay must be in"):
        genbook.EMA(model, decay=1.0)


def test_ema_matches_the_geometric_average_of_many_tensors():
    """After k updates toward fixed weights w: θ_ema = w + decay^k (θ_0 − w), for every tensor and buffer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Linear(4, 2))
    ema = genbook.EMA(model, decay=0.8)
    start = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_mean.fill_(3.0)
    for _ in range(5):
        ema.update(model)
    for p0, p_ema, w in zip(start, ema.model.parameters(), model.parameters()):
        torch.testing.assert_close(p_ema, w + 0.8**5 * (p0 - w))
    assert torch.equal(ema.model[1].running_mean, torch.full((3,), 3.0))  # buffers are copied, not averaged
    with pytest.raises(ValueError, match="parameter tensors"):
        ema.update(nn.Linear(4, 2))


def test_image_grid_layout_and_errors():
    images = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 1, 4, 4).contiguous()
    grid = genbook.image_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    assert grid[1, 1, 0] == 0.0 and grid[1, 6, 0] == 0.25  # first two images, mapped to [0, 1]
    with pytest.raises(ValueError, match=r"must lie in \[-1.0, 1.0\]"):
        genbook.image_grid(images * 255)
    with pytest.raises(ValueError, match="must have shape"):
        genbook.image_grid(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        genbook.image_grid(torch.zeros(2, 2, 4, 4))


def test_show_images_and_plot_losses_draw():
    ax = genbook.show_images(torch.zeros(4, 3, 8, 8), nrow=2, title="t")
    assert ax.get_title() == "t" and len(ax.images) == 1
    ax = genbook.plot_losses({"loss": [(1, 2.0), (2, 1.0)], "aux": [(1, 1.0), (2, 0.5)]})
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="history is empty"):
        genbook.plot_losses({})


def test_warmup_cosine_follows_its_formula():
    lr = genbook.warmup_cosine(1e-3, steps=110, warmup=10)
    assert [lr(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])  # linear warm-up, (s + 1) / warmup
    assert lr(10) == pytest.approx(1e-3)  # the top of the cosine
    assert lr(60) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half way down
    assert lr(110) == pytest.approx(5e-5)  # floor * peak
    assert all(lr(s) >= lr(s + 1) for s in range(10, 110))
    with pytest.raises(ValueError, match="warmup_cosine needs"):
        genbook.warmup_cosine(0.0, steps=10, warmup=1)
    with pytest.raises(ValueError, match="warmup_cosine needs"):
        genbook.warmup_cosine(1e-3, steps=10, warmup=-1)


@pytest.mark.parametrize("schedule, expected", [
    (lambda s: 0.1 * (s + 1), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    (genbook.warmup_constant(0.4, 4), [0.1, 0.2, 0.3, 0.4, 0.4, 0.4]),  # a linear warm-up, then constant
])
def test_fit_sets_the_scheduled_lr_before_each_step(schedule, expected):
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []

    def step(x):
        seen.append(optimizer.param_groups[0]["lr"])
        return model(x).square().mean()

    data = iter([(torch.randn(4, 2),)] * 6)
    genbook.fit(step, data, 6, model=model, optimizer=optimizer, lr_schedule=schedule, amp=False)
    assert seen == pytest.approx(expected)
    with pytest.raises(ValueError, match="lr_schedule needs the optimizer"):
        genbook.fit(lambda x: {"loss": 0.0}, iter([(torch.zeros(1),)]), 1, lr_schedule=lambda s: 0.1)
