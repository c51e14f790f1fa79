"""Load-or-train: round trip, atomic writes, corrupt files and other configs give clear errors; parent models."""

import pytest
import torch
from torch import nn

from genbook.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, load_or_train, save_checkpoint


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBOOK_CHECKPOINTS", str(tmp_path))
    monkeypatch.delenv("GENBOOK_RETRAIN", raising=False)
    monkeypatch.delenv("GENBOOK_PROFILE", raising=False)
    return tmp_path


def make_trainer(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return {"losses": [3.0, 2.0, 1.0]}
    return train


def test_round_trip_trains_once_then_loads(scratch):
    calls, config = [], {"width": 4, "lr": 0.1}
    model, info = load_or_train(nn.Linear(4, 2), make_trainer(calls), chapter="99_test", name="lin", config=config)
    assert calls == [1] and info["cached"] is False and info["losses"] == [3.0, 2.0, 1.0]
    fresh = nn.Linear(4, 2)
    loaded, info2 = load_or_train(fresh, make_trainer(calls), chapter="99_test", name="lin", config=config)
    assert calls == [1], "second call must load, not train"
    assert info2["cached"] is True and info2["losses"] == [3.0, 2.0, 1.0]
    assert torch.equal(loaded.weight, model.weight)
    assert not list(scratch.rglob("*.tmp")), "no temporary files left behind"


def test_loaded_and_trained_models_compute_the_same(scratch):
    """Both come back in eval mode: a model with dropout and BatchNorm gives the same output loaded or trained."""
    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))

    def train(model):  # a plain loop that leaves the model in training mode, as a hand-written one may
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(16, 4)).pow(2).mean().backward()
            opt.step()

    config, x = {"kind": "bn"}, torch.randn(3, 4)
    trained, info = load_or_train(build(), train, chapter="99_test", name="bn", config=config)
    loaded, info2 = load_or_train(build().train(), train, chapter="99_test", name="bn", config=config)
    assert info["cached"] is False and info2["cached"] is True
    assert not trained.training and not loaded.training
    assert not any(m.training for m in loaded.modules())
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))  # train mode would differ: batch statistics, random dropout


def test_key_has_profile_and_config(monkeypatch):
    a = checkpoint_path("99_test", "m", {"w": 1})
    assert a != checkpoint_path("99_test", "m", {"w": 2})
    monkeypatch.setenv("GENBOOK_PROFILE", "full")
    assert "-full-" in checkpoint_path("99_test", "m", {"w": 1}).name and "-fast-" in a.name


def test_other_config_trains_a_new_model():
    calls = []
    load_or_train(nn.Linear(2, 2), make_trainer(calls), chapter="99_test", name="m", config={"w": 1})
    load_or_train(nn.Linear(2, 2), make_trainer(calls), chapter="99_test", name="m", config={"w": 2})
    assert calls == [1, 1]


def test_corrupt_file_is_a_clear_error_and_is_kept():
    calls, config = [], {"w": 1}
    load_or_train(nn.Linear(2, 2), make_trainer(calls), chapter="99_test", name="m", config=config)
    path = checkpoint_path("99_test", "m", config)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as after a crash of a non-atomic writer
    with pytest.raises(CheckpointError, match=r"not a readable genbook checkpoint.*Delete .* to retrain"):
        load_or_train(nn.Linear(2, 2), make_trainer(calls), chapter="99_test", name="m", config=config)
    assert calls == [1], "never silently retrain over a file"
    assert path.stat().st_size == 100


def test_file_of_another_config_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint(path, nn.Linear(2, 2), {"w": 1, "depth": 2})
    with pytest.raises(CheckpointError, match=r"trained with another config \(differs in \['w'\]\)"):
        load_checkpoint(path, nn.Linear(2, 2), {"w": 5, "depth": 2})


def test_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint(path, nn.Linear(2, 2), {"w": 1})
    with pytest.raises(CheckpointError, match="does not fit this model's architecture"):
        load_checkpoint(path, nn.Linear(3, 2), {"w": 1})


def test_code_in_a_pickle_is_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "genbook-checkpoint-1", "payload": nn.Linear(2, 2)}, path)  # a pickled module
    with pytest.raises(CheckpointError, match="not a readable genbook checkpoint"):
        load_checkpoint(path, nn.Linear(2, 2), {})


def test_retrain_env_for_one_chapter(monkeypatch):
    calls = []
    trainer = make_trainer(calls)
    for _ in range(2):
        load_or_train(nn.Linear(2, 2), trainer, chapter="07_flow_matching", name="m", config={})
    assert calls == [1]
    monkeypatch.setenv("GENBOOK_RETRAIN", "05_ddpm")  # slugs of book.toml (unknown ones are refused)
    load_or_train(nn.Linear(2, 2), trainer, chapter="07_flow_matching", name="m", config={})
    assert calls == [1]
    monkeypatch.setenv("GENBOOK_RETRAIN", "05_ddpm,07_flow_matching")
    load_or_train(nn.Linear(2, 2), trainer, chapter="07_flow_matching", name="m", config={})
    assert calls == [1, 1]


def test_bad_arguments():
    with pytest.raises(TypeError, match="config must be JSON-serialisable"):
        checkpoint_path("99_test", "m", {"f": object()})
    with pytest.raises(ValueError, match="name must be a non-empty slug"):
        checkpoint_path("99_test", "../escape", {})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        load_or_train("not a model", lambda m: None, chapter="99_test", name="m", config={})
    with pytest.raises(TypeError, match="extra must hold plain data"):
        load_or_train(nn.Linear(2, 2), lambda m: {"t": torch.ones(2)}, chapter="99_test", name="m", config={})


def test_training_cost_is_measured_and_kept(scratch):
    """info['training'] counts the fit steps inside train() and comes back unchanged on a load."""
    import genbook

    def train(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(64, 3)
        for steps in (7, 5):  # two fit calls (e.g. two stages) add up
            genbook.fit(lambda xb: model(xb).pow(2).mean(), genbook.batches(x, batch_size=8), steps,
                        model=model, optimizer=opt, log_every=100)
        return {"note": 1}

    _, info = load_or_train(nn.Linear(3, 2), train, chapter="99_test", name="cost", config={})
    cost = info["training"]
    assert cost["steps"] == 12 and cost["parameters"] == 3 * 2 + 2 and cost["seconds"] > 0
    assert cost["ms_per_step"] == pytest.approx(1000 * cost["seconds"] / 12, rel=1e-2)
    _, again = load_or_train(nn.Linear(3, 2), train, chapter="99_test", name="cost", config={})
    assert again["cached"] is True and again["training"] == cost and again["note"] == 1
    _, untimed = load_or_train(nn.Linear(2, 2), lambda m: None, chapter="99_test", name="none", config={})
    assert untimed["training"]["steps"] == 0 and untimed["training"]["ms_per_step"] is None


def test_fit_outside_a_metered_block_counts_nowhere(scratch):
    import genbook
    from genbook.training import metered

    model, x = nn.Linear(2, 1), torch.randn(8, 2)
    run = lambda n: genbook.fit(lambda xb: model(xb).pow(2).mean(), genbook.batches(x, batch_size=4), n,  # noqa: E731
                                model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), log_every=10)
    run(3)
    with metered() as outer:
        run(2)
        with metered() as inner:
            run(4)
    run(5)
    assert (outer.steps, inner.steps) == (6, 4)


def _fill(value):
    def train(model):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
    return train


def train_parent_v1(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)


def train_parent_v2(model):  # other training code (a changed training function)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(2.0)


def _parent(train=train_parent_v1, config=None, parent=None):
    """The model "parent" of these tests (a Linear filled by ``train``), loaded or trained: (model, info)."""
    return load_or_train(nn.Linear(2, 2), train, chapter="99_test", name="parent", config=config or {"w": 1},
                         parent=parent)


def _child(calls, parent):
    def train(model):
        calls.append(1)
    return load_or_train(nn.Linear(2, 2), train, chapter="99_test", name="child", config={"steps": 3},
                         parent=parent)


def test_unchanged_parent_lets_the_child_load(scratch, capsys):
    calls = []
    _, parent_info = _parent()
    _, child_info = _child(calls, parent_info)
    _, parent_again = _parent()
    _, child_again = _child(calls, parent_again)
    assert parent_again["cached"] and child_again["cached"] and calls == [1]
    assert "retraining" not in capsys.readouterr().out
    assert parent_again["fingerprint"] == parent_info["fingerprint"] != child_info["fingerprint"]
    assert child_again["fingerprint"] == child_info["fingerprint"]  # a name that is the same trained or loaded
    _, listed = _child(calls, [parent_again])  # a list of one parent is that parent
    assert listed["cached"] and calls == [1]


def test_changed_parent_config_retrains_the_child(scratch, capsys):
    calls = []
    _, parent_info = _parent()
    _child(calls, parent_info)
    _, other = _parent(config={"w": 2})
    assert other["fingerprint"] != parent_info["fingerprint"]
    _, child_info = _child(calls, other)
    assert calls == [1, 1] and child_info["cached"] is False
    assert "99_test/child: a model it was trained from (parent=) changed" in capsys.readouterr().out
    _, child_again = _child(calls, other)  # and then loads again
    assert calls == [1, 1] and child_again["cached"]


def test_changed_parent_code_retrains_the_child(scratch, capsys):
    calls = []
    _, parent_info = _parent()
    _child(calls, parent_info)
    _, edited = _parent(train=train_parent_v2)
    assert edited["cached"] is False and edited["fingerprint"] != parent_info["fingerprint"]
    _child(calls, edited)
    assert calls == [1, 1]
    out = capsys.readouterr().out
    assert "99_test/parent: the code of the model or of its training changed" in out
    assert "99_test/child: a model it was trained from (parent=) changed" in out


def test_a_changed_grandparent_reaches_the_grandchild(scratch):
    calls = []

    def chain(grand_config):
        _, grand = load_or_train(nn.Linear(2, 2), _fill(0.1), chapter="99_test", name="grand", config=grand_config)
        _, parent = _parent(parent=grand)
        return parent, _child(calls, parent)[1]  # the grandparent reaches it through the parent

    parent, child = chain({"g": 1})
    parent_again, child_again = chain({"g": 1})
    assert parent_again["cached"] and child_again["cached"] and calls == [1]
    parent_new, child_new = chain({"g": 2})
    assert not parent_new["cached"] and not child_new["cached"] and calls == [1, 1]
    assert parent_new["fingerprint"] != parent["fingerprint"]


@pytest.mark.parametrize("parent, error, message", [
    ("base", TypeError, "parent must be the info dict that load_or_train returned"),
    (({"fingerprint": "ab"}, {"fingerprint": "cd"}), None, None),  # a tuple of infos is fine
    ({"fingerprint": "ab"}.items(), TypeError, "parent must be the info dict"),
    ([{"fingerprint": "ab"}, 3], TypeError, r"parent\[1\] must be the info dict"),
    ({"steps": 3}, ValueError, "parent has no 'fingerprint': pass the info dict"),  # a config, not an info
    ([{"fingerprint": ""}], ValueError, r"parent\[0\] has no 'fingerprint'"),
    ({"fingerprint": 12}, ValueError, "parent has no 'fingerprint'"),
])
def test_bad_parent_argument(scratch, parent, error, message):
    run = lambda: load_or_train(nn.Linear(2, 2), lambda m: None, chapter="99_test", name="m", config={},  # noqa: E731
                                parent=parent)
    if error is None:
        assert run()[1]["cached"] is False
    else:
        with pytest.raises(error, match=message):
            run()
    assert not list(scratch.rglob("*.pt")) or error is None  # an error comes before any training


NOTEBOOK = '''# %%
import torch
from torch import nn
from genbook.checkpoint import source_key

# %%
class Net(nn.Module):
    scale = 2.0

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return helper(self.lin(x))


def helper(x):
    return x * Net.scale


def train(model):
    return model(torch.ones(1, 2)).sum()

# %%
print("KEY", source_key(Net(), train))
'''


def test_a_chapter_gets_the_same_keys_as_a_notebook_and_as_a_script(tmp_path):
    """Run as a script, a chapter must find the models its notebook run trained (and the other way round)."""
    import subprocess
    import sys

    import jupytext
    import nbclient

    path = tmp_path / "chapter.py"
    path.write_text(NOTEBOOK)
    script = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=True)
    notebook = jupytext.read(path)
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    kernel = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert script.stdout.startswith("KEY ") and script.stdout == kernel
