# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One data set, one evaluator: the families side by side
#
# Chapters 03 to 07 each trained a different kind of generative model on the same
# 28×28 Fashion-MNIST images: a VAE and a VQ-VAE with an autoregressive prior over its
# codes (03), a GAN and a conditional GAN (04), a denoising diffusion model with
# ancestral and DDIM samplers (05), a score model with SDE and probability-flow samplers (06),
# and flow matching with several ODE solvers and a rectified ("reflow") version (07). Each
# chapter measured its own samples, but a number from one chapter next to a number from
# another means something only if both were measured alike. This chapter makes sure they
# were: it **trains nothing**. It loads the samples every chapter saved with
# `genbook.metrics.save_samples`, together with what drawing them cost, and measures all of
# them with one evaluator, at one sample count, against one reference set:
#
# - **quality**: the Fréchet distance (FD) in the features of genbook's own Fashion-MNIST
#   classifier (it is *not* Inception FID: the numbers are comparable with each other and
#   with the baselines here, not with published FIDs), with a bootstrap interval, and the
#   kernel inception distance (KID, Bińkowski et al. 2018), which has no small-sample bias;
# - **coverage**: precision and recall (Kynkäänniemi et al. 2019), and the class histogram
#   of the samples against the uniform one of the data;
# - **control**: conditional accuracy, for the sets saved with requested labels;
# - **cost**: milliseconds per image and network evaluations per image (NFE) as each
#   chapter recorded them; training cost (steps, ms per step, seconds, parameters) as
#   `load_or_train` measured it, where the chapter saved that record; and likelihoods where
#   a family has one, in a column of their own.
#
# The baselines sit in the same table, measured by the same code on the same n: two real
# sets (the floor), blurred training images (real content without fine detail) and a
# Gaussian on 32 principal components (the simplest model with a density).
#
# Then it asks the question that no single chapter can: what does each family buy, and
# with what? Xiao, Kreis and Vahdat (2022) called it the **generative learning trilemma**:
# high sample quality, coverage of the data (diversity) and fast sampling, of which the
# families of their time delivered two at most. We check that claim on our own table.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import genbook
from genbook.data.fashion_mnist import fashion_mnist
from genbook.metrics import (
    evaluate_fashion,
    fashion_evaluator,
    fit_pca_gaussian,
    frechet_distance_bootstrap,
    gaussian_blur,
    image_baselines,
    kernel_inception_distance,
    load_samples,
    n_eval,
    pareto_front,
    precision_recall,
    saved_samples,
    train_sample,
)
from genbook.report import load_results, results_dir

wall_start, cpu_start = time.perf_counter(), time.process_time()
cfg = genbook.profile(
    fast=dict(n_boot=100, kid_subsets=25, histogram_draws=200, grid_images=8),
    full=dict(n_boot=200, kid_subsets=100, histogram_draws=500, grid_images=8),
)
n = n_eval()  # the protocol's sample count: every set, and every baseline, is measured at this n
profile = genbook.profile_name()
print(f"profile {profile}: every set is measured on its first n = {n} images; settings {cfg}")

# %% [markdown]
# ## What the chapters saved
#
# Each Fashion-MNIST chapter ends by calling `save_samples(chapter, name, images, cost=...)`
# for its final samples; `saved_samples()` lists every file under `_build/samples/` and marks
# as stale a set that its chapter's latest run did not save again (left from older code). A
# *family* is a kind of model; one family may have saved several *sets* (one per sampler
# and step count). The table below says which family each set belongs to; a set it does
# not know (say, one you add in an exercise) becomes a family of its own.

# %%
PRODUCERS = {  # chapter -> the families whose samples it saves
    "03_vqvae": "VAE (vae), VQ-VAE with an autoregressive prior (vqvae)",
    "04_gan": "DCGAN (gan), conditional GAN with labels (cgan)",
    "05_ddpm": "DDPM with ancestral and DDIM samplers (ddpm)",
    "06_sde": "score SDE: reverse-SDE and probability-flow ODE samplers (sde)",
    "07_flow_matching": "flow matching with Euler / midpoint / RK4 (flow_matching), rectified flow (reflow)",
}
FAMILY_RULES = [  # (chapter, the set's name starts with, family); the first match wins
    ("03_vqvae", "vqvae", "vqvae"),
    ("03_vqvae", "vae", "vae"),
    ("04_gan", "cgan", "cgan"),
    ("04_gan", "gan", "gan"),
    ("05_ddpm", "", "ddpm"),
    ("06_sde", "", "sde"),
    ("07_flow_matching", "reflow", "reflow"),
    ("07_flow_matching", "", "flow_matching"),
]


def family_of(chapter: str, name: str) -> str:
    for rule_chapter, prefix, family in FAMILY_RULES:
        if chapter == rule_chapter and name.startswith(prefix):
            return family
    return f"{chapter.split('_', 1)[-1]}_{name}".replace("-", "_")  # unknown: a family of its own


assert family_of("03_vqvae", "vqvae_prior") == "vqvae" and family_of("03_vqvae", "vae") == "vae"
assert family_of("07_flow_matching", "reflow_euler_2") == "reflow" and family_of("99_new", "x") == "new_x"

# %%
everything = saved_samples()
other_profiles = sorted({info["profile"] for info in everything} - {profile})
sets, skipped = [], []
for info in everything:
    where = f"{info['chapter']}/{info['name']}"
    if info["profile"] != profile:
        continue
    if info["stale"]:
        skipped.append(f"{where}: saved by an older run of {info['chapter']}; its latest run did not save it again")
        continue
    if info["shape"] != [1, 28, 28]:
        skipped.append(f"{where}: not Fashion-MNIST images (shape {info['shape']}); its chapter measures it itself")
        continue
    if info["n"] < n:
        skipped.append(f"{where}: {info['n']} images, fewer than n = {n}; rerun {info['chapter']} to save more")
        continue
    images, info = load_samples(info["chapter"], info["name"])
    labels = info.get("labels")
    sets.append({
        "set": where, "chapter": info["chapter"], "name": info["name"],
        "family": family_of(info["chapter"], info["name"]),
        "images": images[:n], "labels": None if labels is None else labels[:n],
        "ms_per_image": float(info["cost"]["ms_per_image"]), "nfe": float(info["cost"]["nfe"]),
        "batch_size": info["cost"].get("batch_size"), "notes": info["notes"], "saved": info["saved"],
        "training": info.get("training"),  # None: saved without a training record
    })

missing = [chapter for chapter in PRODUCERS if not any(s["chapter"] == chapter for s in sets)]
missing_text = "\n".join(
    f"  - {chapter}: {PRODUCERS[chapter]}. Produce them with `make test` (it runs every chapter before this one) "
    f"or `cd chapters && GENBOOK_PROFILE={profile} python {chapter}.py`."
    for chapter in missing)
if not sets:
    raise FileNotFoundError(
        f"No saved Fashion-MNIST samples in the {profile} profile under {results_dir().parent / 'samples'}: "
        f"this chapter compares the samples the other chapters saved, and none has run yet.\n{missing_text}")

print(f"{len(sets)} sample sets from {len({s['chapter'] for s in sets})} chapters, {len({s['family'] for s in sets})} "
      f"families, profile {profile}:")
for s in sets:
    print(f"  {s['set']:<34} family {s['family']:<14} NFE {s['nfe']:>4g}  {s['ms_per_image']:8.2f} ms/image  "
          f"labels: {'yes' if s['labels'] is not None else 'no ':<4} training record: "
          f"{'yes' if s['training'] else 'no ':<4} saved {s['saved']}")
for s in sets:
    if "sampled" in s["notes"]:  # what a chapter chose to save as its samples, in its own words
        print(f"  {s['set']} saved: {s['notes']['sampled']}")
for line in skipped:
    print(f"  skipped {line}")
if other_profiles:
    print(f"  (sets of the {', '.join(other_profiles)} profile are not mixed in: another n, other models)")
print("missing:\n" + missing_text if missing else "every chapter that saves Fashion-MNIST samples has saved them")

# %% [markdown]
# ## One evaluator, one pass per set
#
# Every number below comes from the evaluator's 128 features of each image, computed
# **once per set** and reused by every metric (the class prediction is the evaluator's
# last linear layer applied to the same features). The reference is the protocol's:
# the first n test images. The three baseline sets are built exactly as
# `image_baselines(n)` builds them (seed 0), so that they can get the same treatment as
# the models: intervals, KID, precision and recall, histograms.

# %%
evaluator = fashion_evaluator()
reference, reference_labels = fashion_mnist("test", n=n)
reference_features = evaluator.features(reference)  # (n, 128)
head_weight, head_bias = evaluator.head.weight.detach().cpu(), evaluator.head.bias.detach().cpu()


def class_predictions(features: torch.Tensor) -> torch.Tensor:
    """The evaluator's class (N,) from its features (N, 128): its last layer, logits = W f + b."""
    return F.linear(features, head_weight, head_bias).argmax(1)


def class_histogram(predicted: torch.Tensor) -> torch.Tensor:
    """Share of each of the 10 classes (10,)."""
    return torch.bincount(predicted, minlength=10).double() / len(predicted)


def tv_to_uniform(histogram: torch.Tensor) -> float:
    """Total variation distance to the uniform histogram: ½ Σ_c |p_c − 1/10|, 0 (balanced) .. 0.9 (one class)."""
    return 0.5 * (histogram - 0.1).abs().sum().item()


def measure(images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    """Every protocol number for n images (n, 1, 28, 28): one pass through the evaluator."""
    features = evaluator.features(images)  # (n, 128), computed once
    fd = frechet_distance_bootstrap(features, reference_features, n_boot=cfg["n_boot"])
    kid = kernel_inception_distance(features, reference_features, n_subsets=cfg["kid_subsets"])
    predicted = class_predictions(features)
    histogram = class_histogram(predicted)
    out = {"fd": fd["fd"], "fd_low": fd["low"], "fd_high": fd["high"], "fd_ci": (fd["high"] - fd["low"]) / 2,
           "kid": kid.mean, "kid_std": kid.std, **precision_recall(reference_features, features),
           "histogram": histogram, "tv_uniform": tv_to_uniform(histogram), "smallest_class": histogram.min().item()}
    if labels is not None:
        out["accuracy"] = (predicted == labels).double().mean().item()
    return out


started = time.process_time()
for s in sets:
    s.update(measure(s["images"], s["labels"]))
print(f"{len(sets)} sets measured in {time.process_time() - started:.1f} s of CPU time")

# %% [markdown]
# Is `measure` the protocol? `evaluate_fashion` is what the chapters themselves called;
# on the same images it must give the same FD, interval, precision, recall and
# conditional accuracy, to the last digit.

# %%
check_set = next((s for s in sets if s["labels"] is not None), sets[0])
protocol = evaluate_fashion(check_set["images"], n=n, evaluator=evaluator, labels=check_set["labels"],
                            n_boot=cfg["n_boot"])
for key, value in protocol.items():
    assert math.isclose(check_set[key], value, rel_tol=1e-9, abs_tol=1e-12), (key, check_set[key], value)
print(f"measure() == evaluate_fashion() on {check_set['set']}: {', '.join(sorted(protocol))}")

# %% [markdown]
# ## The baselines, measured the same way
#
# - **real vs real**: n training images against the n test images of the reference: what a
#   perfect model would score at this n (FD is biased upwards at finite n, so the floor is
#   not 0);
# - **blurred**: the same training images blurred by a Gaussian of σ = 1 pixel;
# - **PCA-Gaussian**: a Gaussian on the top 32 principal components of all training images.
#
# Their FDs must equal `image_baselines(n)`, the numbers every chapter put next to its own.

# %%
real_images, real_labels = train_sample(n, seed=0)
baseline_images = {
    "real vs real": real_images,
    "blurred (σ = 1 px)": gaussian_blur(real_images, 1.0).clamp(-1, 1),
    "PCA-Gaussian": fit_pca_gaussian(32).sample(n, torch.Generator().manual_seed(0)),
}
baseline_rows = {name: measure(images) for name, images in baseline_images.items()}
baselines = image_baselines(n, evaluator=evaluator)
for key, name in (("fd_real_vs_real", "real vs real"), ("fd_blurred", "blurred (σ = 1 px)"),
                  ("fd_pca_gaussian", "PCA-Gaussian")):
    assert math.isclose(baseline_rows[name]["fd"], baselines[key], rel_tol=1e-9), (key, baselines[key])
fd_real, fd_blurred, fd_pca = baselines["fd_real_vs_real"], baselines["fd_blurred"], baselines["fd_pca_gaussian"]
real_accuracy = (class_predictions(reference_features) == reference_labels).double().mean().item()
print(f"baselines at n = {n}: real vs real {fd_real:.1f}, blurred {fd_blurred:.1f}, PCA-Gaussian {fd_pca:.1f} "
      f"(== image_baselines); evaluator accuracy on the real reference images {real_accuracy:.3f}")

# %% [markdown]
# ## The table
#
# One row per saved set, then the baselines. FD comes with its 95% bootstrap interval
# (see `frechet_distance_bootstrap`: it errs wide, and it is an interval for FD *at this n*,
# not for an infinite sample). KID is shown with its spread over random subsets (its scale is set by the
# evaluator's features: compare it only within this table). TV is the
# total variation distance between the evaluator's class histogram of the set and the
# uniform one. "acc." is conditional accuracy: the share of samples the evaluator puts
# in the class that was asked for.

# %%
sets.sort(key=lambda s: (s["chapter"], s["family"], s["nfe"], s["name"]))


def table_row(name: str, r: dict, nfe: str = "", ms: str = "") -> str:
    accuracy = f"{r['accuracy']:.3f}" if "accuracy" in r else "–"
    return (f"{name:<34} {nfe:>4} {ms:>8}  {r['fd']:7.1f} [{r['fd_low']:6.1f}, {r['fd_high']:6.1f}]  "
            f"{r['kid']:6.2f} ± {r['kid_std']:4.2f}  {r['precision']:6.3f} {r['recall']:6.3f}  "
            f"{r['tv_uniform']:6.3f}  {accuracy:>5}")


header = (f"{'set':<34} {'NFE':>4} {'ms/img':>8}  {'FD':>7} {'[95% interval]':<16}  {'KID':>13}  "
          f"{'prec.':>6} {'recall':>6}  {'TV':>6}  {'acc.':>5}")
print(header)
print("-" * len(header))
for s in sets:
    print(table_row(s["set"], s, f"{s['nfe']:g}", f"{s['ms_per_image']:.2f}"))
print("-" * len(header))
for name, r in baseline_rows.items():
    print(table_row(f"baseline: {name}", r))
print(f"(evaluator's accuracy on the real reference images, the ceiling for acc.: {real_accuracy:.3f})")

# %% [markdown]
# What the samples look like, one row per set, the first images of each (the same images
# that were measured):

# %%
fig, axes = plt.subplots(len(sets), 1, figsize=(8, 0.62 * len(sets)))
for ax, s in zip(axes if len(sets) > 1 else [axes], sets):
    genbook.show_images(s["images"][: cfg["grid_images"]], nrow=cfg["grid_images"], ax=ax)
    ax.text(-0.02, 0.5, f"{s['set']}\nFD {s['fd']:.0f}", transform=ax.transAxes, ha="right", va="center", fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## One number per family
#
# A family that saved several sets (a sampler at several step counts) is represented by
# its set with the lowest FD. Choosing the best of several sets on the same reference
# favours the family a little (a winner's curse of the size of the intervals), so the
# per-set table above stays the primary evidence. These are the numbers recorded for the
# book's results page.

# %%
families = {}
for s in sets:
    if s["family"] not in families or s["fd"] < families[s["family"]]["fd"]:
        families[s["family"]] = s
family_order = sorted(families, key=lambda f: families[f]["fd"])
for f in family_order:
    s = families[f]
    extra = f", conditional accuracy {s['accuracy']:.3f}" if "accuracy" in s else ""
    print(f"{f:<14} {s['set']:<34} FD {s['fd']:6.1f} [{s['fd_low']:.1f}, {s['fd_high']:.1f}]  precision "
          f"{s['precision']:.3f}  recall {s['recall']:.3f}  NFE {s['nfe']:g}  {s['ms_per_image']:.2f} ms/image{extra}")

# %% [markdown]
# ### Rankings, only where the intervals say so
#
# Two FDs measured at n = 1000 differ by chance by several units (the interval). We say
# "A is better than B" only when A's whole interval lies below B's; otherwise this run
# cannot order them. The sentences below are written by code from the table.

# %%
def separated(a: dict, b: dict) -> bool:
    """True when a's FD interval lies entirely below b's."""
    return a["fd_high"] < b["fd_low"]


rows = [(f, families[f]) for f in family_order] + [
    (f"baseline {k}", v) for k, v in baseline_rows.items() if k != "real vs real"]  # the floor: below every model
rows.sort(key=lambda item: item[1]["fd"])
sentences = []
for name, r in rows:
    worse = [other for other, o in rows if separated(r, o)]
    tied = [other for other, o in rows if other != name and not separated(r, o) and not separated(o, r)]
    if worse:
        sentences.append(f"{name} (FD {r['fd']:.1f}) is better than {', '.join(worse)}"
                         + (f"; tied with {', '.join(tied)}" if tied else "") + ".")
    elif tied:
        sentences.append(f"{name} (FD {r['fd']:.1f}) cannot be ordered against {', '.join(tied)}.")
for sentence in sentences:
    print("-", sentence)
top_name, top = rows[0]
top_ties = [name for name, r in rows[1:] if not separated(top, r)]
print(f"\nLowest FD in this run: {top_name} ({top['fd']:.1f}); "
      + (f"its interval overlaps those of {', '.join(top_ties)}, so this run declares no single winner."
         if top_ties else "its interval lies below every other's: a clear winner."))
floor = baseline_rows["real vs real"]
print(f"Every set is above the real-vs-real floor ({floor['fd']:.1f}, interval up to {floor['fd_high']:.1f}): "
      f"{all(separated(floor, s) for s in sets)}")

# %% [markdown]
# ## Coverage: classes, precision and recall
#
# FD folds "the samples look wrong" and "the samples miss part of the data" into one
# number. Two views tell them apart. Fashion-MNIST has exactly 1/10 of each class, so a
# model that covers the data should produce a class histogram near uniform. How near?
# Real images are not exactly uniform either: the evaluator misclassifies some, and n
# images are a random draw. So we compare each set's distance to uniform with that of
# many random sets of n real test images: above their 95th percentile, a set's classes are
# unbalanced beyond what sampling noise explains.

# %%
test_images, _ = fashion_mnist("test")
test_predicted = class_predictions(evaluator.features(test_images))  # (10000,)
draws = torch.Generator().manual_seed(0)
real_tv = torch.tensor([tv_to_uniform(class_histogram(test_predicted[torch.randperm(len(test_predicted),
                                                                                  generator=draws)[:n]]))
                        for _ in range(cfg["histogram_draws"])])
tv_noise = torch.quantile(real_tv.double(), 0.95).item()
two_real_tv = 0.5 * (baseline_rows["real vs real"]["histogram"] - class_histogram(
    class_predictions(reference_features))).abs().sum().item()
print(f"real sets of n = {n}: TV to uniform median {real_tv.median():.3f}, 95th percentile {tv_noise:.3f}; "
      f"TV between the two real sets of the table (train sample vs reference) {two_real_tv:.3f}")
unbalanced = [s["set"] for s in sets if s["tv_uniform"] > tv_noise]
balanced = [s["set"] for s in sets if s["tv_uniform"] <= tv_noise]
print(f"unbalanced beyond sampling noise ({len(unbalanced)}): {', '.join(unbalanced) or 'none'}")
print(f"within sampling noise ({len(balanced)}): {', '.join(balanced) or 'none'}")

class_names = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
fig, ax = plt.subplots(figsize=(9, 3.2))
width = 0.8 / (len(families) + 1)
for i, f in enumerate(family_order):
    ax.bar(torch.arange(10) + i * width, families[f]["histogram"], width, label=f)
ax.bar(torch.arange(10) + len(families) * width, class_histogram(class_predictions(reference_features)), width,
       color="k", label="real (reference)")
ax.axhline(0.1, color="gray", ls="--", lw=0.8)
ax.set_xticks(torch.arange(10) + 0.4, class_names, fontsize=8)
ax.set_ylabel("share of samples")
ax.set_title("class histogram (the evaluator's predictions), best set per family")
ax.legend(fontsize=7, ncol=5)
plt.show()

# %% [markdown]
# Precision asks whether samples fall where real images are; recall whether real images
# fall where samples are. The real-vs-real point is the ceiling at this n; a model in the
# top left looks real but covers little (collapse), one at the bottom right covers the
# data with samples that do not look real.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for f in family_order:
    members = [s for s in sets if s["family"] == f]
    ax.scatter([s["recall"] for s in members], [s["precision"] for s in members], label=f, s=25)
for name, r in baseline_rows.items():
    ax.scatter(r["recall"], r["precision"], marker="x", color="k")
    ax.annotate(name, (r["recall"], r["precision"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set_xlabel("recall (coverage)")
ax.set_ylabel("precision (realism)")
ax.set_xlim(-0.02, 1)
ax.set_ylim(0, 1)
ax.legend(fontsize=7)
plt.show()
conditional = [s for s in sets if "accuracy" in s]
for s in conditional:
    print(f"{s['set']}: conditional accuracy {s['accuracy']:.3f} (the evaluator on real images: {real_accuracy:.3f}), "
          f"precision {s['precision']:.3f}, recall {s['recall']:.3f}")

# %% [markdown]
# ## Quality against cost
#
# A sampler that is ten times faster and a little worse is neither better nor worse than a
# slow, good one: the useful answer is the **Pareto front**, the sets that no other set beats
# on both cost and FD (`genbook.metrics.pareto_front`). Two costs:
#
# - **NFE**, network evaluations per image: independent of the machine, but blind to the
#   size of the network (a GAN's generator, a UNet and a small transformer over 49 codes
#   with a key-value cache each count one evaluation at very different prices);
# - **ms per image**, as each chapter measured it with `timed_sampling` (sampling only, at its
#   own batch size, on its own run): comparable within a run on one idle machine, and only
#   roughly across chapters run at different times on a shared one.

# %%
front_ms = [sets[i] for i in pareto_front([(s["ms_per_image"], s["fd"]) for s in sets])]
front_nfe = [sets[i] for i in pareto_front([(s["nfe"], s["fd"]) for s in sets])]
front_3d = [sets[i] for i in pareto_front([(s["ms_per_image"], s["fd"], -s["recall"]) for s in sets])]
assert front_ms and front_nfe, "the Pareto front of a non-empty set of points cannot be empty"
print("Pareto front, FD against ms per image (fastest first):")
for s in front_ms:
    print(f"  {s['set']:<34} {s['ms_per_image']:8.2f} ms/image  FD {s['fd']:6.1f}  recall {s['recall']:.3f}")
print("Pareto front, FD against NFE:")
for s in front_nfe:
    print(f"  {s['set']:<34} NFE {s['nfe']:>4g}  FD {s['fd']:6.1f}")
print(f"adding recall as a third objective puts {len(front_3d)} of {len(sets)} sets on the front: "
      f"{', '.join(s['set'] for s in front_3d)}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, key, front, label in ((axes[0], "ms_per_image", front_ms, "ms per image (as recorded)"),
                              (axes[1], "nfe", front_nfe, "network evaluations per image (NFE)")):
    for f in family_order:
        members = [s for s in sets if s["family"] == f]
        ax.scatter([s[key] for s in members], [s["fd"] for s in members], label=f, s=25)
        ax.errorbar([s[key] for s in members], [s["fd"] for s in members], fmt="none", ecolor="lightgray",
                    yerr=[[s["fd"] - s["fd_low"] for s in members], [s["fd_high"] - s["fd"] for s in members]])
    ax.step([s[key] for s in front], [s["fd"] for s in front], where="post", color="k", lw=1, label="Pareto front")
    for rung, value, style in (("real vs real", fd_real, ":"), ("blurred", fd_blurred, "--"),
                               ("PCA-Gaussian", fd_pca, "-.")):
        ax.axhline(value, color="gray", ls=style, lw=0.8)
        ax.text(1.01, value, rung, fontsize=7, va="center", transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("FD (lower is better)")
axes[0].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The trilemma, on this table
#
# Xiao et al. (2022) named three things a generative model should deliver: high-quality
# samples, coverage of the data (mode coverage, diversity) and fast sampling; GANs were
# fast and sharp but covered poorly, VAEs and normalizing flows were fast and covered but
# were blurry, diffusion models had both quality and coverage but needed hundreds or
# thousands of network evaluations. To check that on our table we need thresholds; we take
# them from the baselines where we can:
#
# - **quality**: FD at or below the blurred-data rung (real content without fine detail);
# - **coverage**: recall at or above the PCA-Gaussian's, a model that by construction spreads
#   over the whole data (a Gaussian with the data's covariance in 32 directions);
# - **speed**: at most 4 network evaluations per image, the budget of Xiao et al.'s own
#   answer, the denoising diffusion GAN (2 to 4 steps).
#
# A family delivers a combination when one of its sets does (a sampler with few steps
# counts as fast only if that very set also has the quality).

# %%
FAST_NFE = 4
recall_floor = baseline_rows["PCA-Gaussian"]["recall"]
virtues = {"quality": lambda s: s["fd"] <= fd_blurred, "coverage": lambda s: s["recall"] >= recall_floor,
           "speed": lambda s: s["nfe"] <= FAST_NFE}
print(f"thresholds: quality FD <= {fd_blurred:.1f} (blurred), coverage recall >= {recall_floor:.3f} (PCA-Gaussian), "
      f"speed NFE <= {FAST_NFE}")
trilemma = {}
for f in family_order:
    members = [s for s in sets if s["family"] == f]
    best_combo = max(members, key=lambda s: (sum(v(s) for v in virtues.values()), -s["fd"]))
    trilemma[f] = (best_combo, [name for name, v in virtues.items() if v(best_combo)])
    print(f"{f:<14} {', '.join(trilemma[f][1]) or 'none of the three':<28} (best set for this: {best_combo['set']}: "
          f"FD {best_combo['fd']:.1f}, recall {best_combo['recall']:.3f}, NFE {best_combo['nfe']:g})")
all_three = [f for f in family_order if len(trilemma[f][1]) == 3]
two = [f for f in family_order if len(trilemma[f][1]) == 2]
if all_three:
    print(f"\nIn this run {' and '.join(all_three)} {'delivers' if len(all_three) == 1 else 'deliver'} all three by "
          f"these thresholds: on 28×28 Fashion-MNIST, with this evaluator and these small models, the trilemma does "
          f"not bind. It is a claim about families at scale on harder data, and recall at n = {n} in the evaluator's "
          f"128-D features is a coarse measure of coverage (exercise 10.2 puts intervals on it).")
else:
    print(f"\nNo family delivers all three by these thresholds: the trilemma holds on this table. Two of three: "
          f"{', '.join(f + ' (' + ' + '.join(trilemma[f][1]) + ')' for f in two) or 'none'}.")
missing_virtue = {name: [f for f in family_order if name not in trilemma[f][1]] for name in virtues}
for name, fams in missing_virtue.items():
    print(f"without {name}: {', '.join(fams) or 'no family'}")

# %% [markdown]
# ## Training cost and likelihoods, where the chapters recorded them
#
# Sampling cost is half the bill; training is the other. `genbook.load_or_train` measures
# every model it trains (the steps of the `genbook.fit` calls inside, their seconds, and
# the parameters of the trained module) and keeps that record in the checkpoint, so a
# model loaded from the cache still reports what it cost when it was trained. Each chapter
# hands the record to `save_samples(..., training=info["training"])`: one record per stage
# for a model trained in stages (the VQ-VAE is a tokenizer and then a prior over its
# codes). The table reads those records and nothing else; a family whose chapter has not
# (yet) passed one is named below, not estimated.
#
# Read the columns with care:
#
# - **steps** and **parameters** are facts of the recipe, the same on any machine;
# - **ms per step** and the **training seconds** are wall-clock measurements on whatever
#   machine trained the model, under whatever load it had (CI runs two chapters at once on
#   a shared CPU; a GPU would be one to two orders of magnitude faster): compare them within
#   this table only as rough orders of magnitude, never with published numbers;
# - a "step" is a chapter's own: its batch size differs between chapters, and a GAN's step
#   updates two networks; **parameters** counts everything in the trained module (a GAN's
#   includes its discriminator and the moving-average copy of its generator).
#
# Likelihoods go in a column of their own because they are not comparable across families
# without care: the VAE's is an upper bound (IWAE) on bits per dimension of uniformly
# dequantised pixels; the score model's is the probability-flow ODE's bits per dimension,
# estimated with Hutchinson's trace estimator on a few test images; the VQ-VAE's prior
# gives bits per *code* (a 7×7 grid of discrete codes), a likelihood of the codes, not of
# the pixels; GANs and the samplers of DDPM and flow matching as run here give none.

# %%
LIKELIHOOD_KEYS = {  # family -> (chapter, metric, what it is)
    "vae": ("03_vqvae", "vae_bpd", "bits/dim, IWAE upper bound, dequantised"),
    "vqvae": ("03_vqvae", "prior_bits_per_code", "bits per code of the prior (not per pixel)"),
    "sde": ("06_sde", "bpd_ode", "bits/dim, probability-flow ODE + Hutchinson, dequantised"),
}
records = {r["chapter"]: r for r in load_results() if r.get("profile") == profile}


def training_cost(stages: list[dict] | None) -> dict | None:
    """Sum the training records of a set's stages: steps, seconds, ms per step, parameters, devices."""
    if not stages:
        return None
    steps, seconds = sum(t["steps"] for t in stages), sum(t["seconds"] for t in stages)
    parameters = [t.get("parameters") for t in stages]
    return {"stages": len(stages), "steps": steps, "seconds": seconds,
            "ms_per_step": 1000 * seconds / steps if steps else None,
            "parameters": None if None in parameters else sum(parameters),
            "devices": sorted({str(t.get("device")) for t in stages})}


cost = {f: training_cost(families[f]["training"]) for f in family_order}
likelihood = {}
for f in family_order:
    chapter_l, metric, what = LIKELIHOOD_KEYS.get(f, (None, None, None))
    value = (records.get(chapter_l) or {}).get("metrics", {}).get(metric)
    likelihood[f] = None if value is None else (value, what)
print(f"{'family':<14} {'stages':>6} {'train steps':>11} {'ms/step':>8} {'train s':>8} {'parameters':>11} "
      f"{'device':>6}  likelihood")
for f in family_order:
    c, lik = cost[f], likelihood[f]
    lik_text = f"{lik[0]:.3f} ({lik[1]})" if lik else "–"
    if c is None:
        print(f"{f:<14} {'–':>6} {'–':>11} {'–':>8} {'–':>8} {'–':>11} {'–':>6}  {lik_text}")
        continue
    params = f"{c['parameters']:,}" if c["parameters"] is not None else "–"
    print(f"{f:<14} {c['stages']:>6} {c['steps']:>11,} {c['ms_per_step']:>8.1f} {c['seconds']:>8.1f} {params:>11} "
          f"{'/'.join(c['devices']):>6}  {lik_text}")
recorded_families = [f for f in family_order if cost[f] is not None]
unrecorded = [f for f in family_order if cost[f] is None]
for f in unrecorded:
    chapter = families[f]["chapter"]
    print(f"- {f}: no training record saved with its samples ({families[f]['set']}, saved {families[f]['saved']}): "
          f"{chapter} must pass training=info['training'] to save_samples from a model trained under the metered "
          f"load_or_train (rerun it with GENBOOK_RETRAIN={chapter})")
for f in recorded_families:
    if cost[f]["stages"] > 1:
        parts = ", ".join(f"{t['steps']:,} steps in {t['seconds']:.1f} s, {t['parameters']:,} parameters"
                          for t in families[f]["training"])
        print(f"- {f}: trained in {cost[f]['stages']} stages ({parts}); the row sums them")
if recorded_families:
    cheapest = min(recorded_families, key=lambda f: cost[f]["seconds"])
    dearest = max(recorded_families, key=lambda f: cost[f]["seconds"])
    print(f"training recorded for {len(recorded_families)} of {len(family_order)} families: from "
          f"{cost[cheapest]['seconds']:.0f} s ({cheapest}) to {cost[dearest]['seconds']:.0f} s ({dearest}) on the "
          f"machines that trained them (ms per step depends on the machine and its load; steps and parameters do not)")
    front_train = [recorded_families[i] for i in pareto_front([(cost[f]["seconds"], families[f]["fd"])
                                                               for f in recorded_families])]
    print("Pareto front of FD against training seconds (among the families that recorded it): "
          + ", ".join(f"{f} ({cost[f]['seconds']:.0f} s, FD {families[f]['fd']:.1f})" for f in front_train))
for f in family_order:  # each likelihood next to the baselines its own chapter measured on the same test images
    if not (likelihood[f] and "bits/dim" in likelihood[f][1]):
        continue
    value, chapter_l = likelihood[f][0], LIKELIHOOD_KEYS[f][0]
    own = {k: v for k, v in records[chapter_l].get("baselines", {}).items()
           if k in ("ppca_bpd", "independent_pixels_bpd")}
    print(f"{f}: {value:.3f} bits/dim; {chapter_l}'s baselines on its test images: "
          + (", ".join(f"{k} {v:.3f}" for k, v in own.items()) or "none recorded"))
    if "independent_pixels_bpd" in own:
        independent = own["independent_pixels_bpd"]
        print(f"  {'below' if value < independent else 'above'} the independent-pixels categorical "
              f"({independent:.3f}): {'a better' if value < independent else 'a worse'} density of those test images "
              f"than a model that ignores every correlation between pixels")

# %% [markdown]
# ## The bars, and what is recorded
#
# The chapter records, for each family, its best set's FD with the interval's half-width,
# precision, recall, KID, NFE and class balance (and conditional accuracy), the sampling
# time and the training record among the machine-dependent `timings` (steps and parameters
# among the metrics); the baselines of the same run next to them. Its bars: every family
# beats the PCA-Gaussian on FD, with its whole bootstrap interval below the PCA-Gaussian's
# FD, and the Pareto front is not empty. Each family's FD here must also agree with the one
# its own chapter recorded (the same images, the same evaluator, the same reference).

# %%
beats_pca = [f for f in family_order if families[f]["fd_high"] < fd_pca]
below_pca = [f for f in family_order if f not in beats_pca]
print(f"beat the PCA-Gaussian (FD {fd_pca:.1f}) with the whole interval: {', '.join(beats_pca) or 'none'}")
for f in below_pca:
    print(f"does NOT beat it: {f} (FD {families[f]['fd']:.1f}, interval up to {families[f]['fd_high']:.1f})")
assert not below_pca, f"families that do not beat the PCA-Gaussian on FD ({fd_pca:.1f}): {below_pca}"
for f in family_order:  # the chapter's own number, where it recorded one under the family's name
    own = (records.get(families[f]["chapter"]) or {}).get("metrics", {}).get(f"fd_{f}")
    if own is not None:
        assert families[f]["fd_low"] <= own <= families[f]["fd_high"], (f, own, families[f]["fd"])
        print(f"{f}: chapter {families[f]['chapter']} recorded FD {own:.1f}, inside this chapter's interval")
assert front_ms and front_nfe
print(f"Pareto front (ms per image, FD): {', '.join(s['set'] for s in front_ms)}")

metrics, timings = {}, {}
for f in family_order:
    s = families[f]
    metrics.update({f"fd_{f}": s["fd"], f"fd_ci_{f}": s["fd_ci"], f"precision_{f}": s["precision"],
                    f"recall_{f}": s["recall"], f"kid_{f}": s["kid"], f"nfe_{f}": s["nfe"],
                    f"tv_uniform_{f}": s["tv_uniform"]})
    if "accuracy" in s:
        metrics[f"accuracy_{f}"] = s["accuracy"]
    timings[f"ms_per_image_{f}"] = s["ms_per_image"]
    if cost[f] is not None:
        metrics.update({f"train_steps_{f}": cost[f]["steps"]})
        if cost[f]["parameters"] is not None:
            metrics[f"parameters_{f}"] = cost[f]["parameters"]
        timings.update({f"train_s_{f}": cost[f]["seconds"], f"train_ms_per_step_{f}": cost[f]["ms_per_step"]})
report_baselines = {
    "fd_real_vs_real": fd_real, "fd_blurred": fd_blurred, "fd_pca_gaussian": fd_pca,
    "precision_real_vs_real": baseline_rows["real vs real"]["precision"],
    "recall_real_vs_real": baseline_rows["real vs real"]["recall"],
    "recall_pca_gaussian": recall_floor, "tv_uniform_real_p95": tv_noise, "accuracy_real": real_accuracy,
}
cpu_s = time.process_time() - cpu_start
record = genbook.report("10_capstone", metrics=metrics, baselines=report_baselines, timings=timings, n_eval=n,
                        n_sets=len(sets), best_sets={f: families[f]["set"] for f in family_order},
                        pareto_ms=[s["set"] for s in front_ms], pareto_nfe=[s["set"] for s in front_nfe],
                        missing_chapters=missing, training_not_recorded=unrecorded, cpu_s=round(cpu_s, 1))
print(f"recorded {len(record['metrics'])} metrics for {len(family_order)} families, {len(record['baselines'])} "
      f"baselines, {len(record['timings'])} timings; {cpu_s:.0f} s of CPU time, "
      f"{time.perf_counter() - wall_start:.0f} s wall")

# %% [markdown]
# ## Exercises
#
# **Exercise 10.1: precision and recall, by hand.** Write `precision_recall_2d(real, fake, k)`
# for point sets `real` (N, 2) and `fake` (M, 2) as Kynkäänniemi et al. (2019) define them:
# the radius of each point is the distance to its k-th nearest *other* point of its own set;
# a point lies in a set's manifold when it is within the radius of at least one of that
# set's points; precision is the share of fake points in the real manifold, recall the
# share of real points in the fake manifold. Return two numbers. The check runs your
# function on eight Gaussians on a circle against a good model, a collapsed one and a
# too-wide one, at k = 1, 3 and 5.

# %% tags=["exercise"]
def precision_recall_2d(real, fake, k):
    """(precision, recall) of ``fake`` (M, 2) against ``real`` (N, 2) with k-NN balls."""
    # BEGIN SOLUTION
    def radii(x):  # (N,): distance to the k-th nearest other point; the point itself is the first of k + 1
        return torch.cdist(x, x).topk(k + 1, dim=1, largest=False).values[:, -1]

    def share_inside(points, centres, r):
        return (torch.cdist(points, centres) <= r).any(dim=1).double().mean().item()

    return share_inside(fake, real, radii(real)), share_inside(real, fake, radii(fake))
    # END SOLUTION


# %%
from genbook.exercises.capstone import check_precision_recall_2d, problems

check_precision_recall_2d(precision_recall_2d)
print("precision_recall_2d: correct")
for name, real_2d, fake_2d in problems():
    p, r = precision_recall_2d(real_2d, fake_2d, 3)
    print(f"  {name}: precision {p:.2f}, recall {r:.2f}")

# %% [markdown]
# **Exercise 10.2 (no check): re-rank by recall, with intervals.** The families were ranked by
# FD only where the bootstrap intervals did not overlap. Do the same for recall: resample
# the sample set's features with replacement (keep the reference fixed), recompute recall
# with `precision_recall` 100 times, and take the 2.5% and 97.5% quantiles. Which orderings
# of the families by recall survive? Does the trilemma verdict above change when "coverage"
# must hold with the whole interval above the PCA-Gaussian's recall?
#
# **Exercise 10.3 (no check): add a family.** Draw 1000 samples from a model of your own (the
# PCA-Gaussian with 64 components, a Gaussian mixture fitted to the training pixels, or a
# chapter's model with a sampler it did not try), time them with `timed_sampling`, save them
# with `save_samples("99_mine", "mymodel", images, cost=cost)` and run this chapter again. Where
# does your family land on the Pareto front? (Delete `_build/samples/99_mine/` afterwards.)
#
# **Exercise 10.4 (no check): the price of one evaluation.** The VQ-VAE's prior needs 49
# network evaluations per image and yet samples faster than DDPM with 10. Using the
# parameter counts in the training-cost table and the recorded ms per image, estimate the
# cost of one evaluation of each network. Which cost axis, NFE or milliseconds, would you
# report in a paper, and what would you add so a reader on other hardware can compare?
#
# **Exercise 10.5 (no check): thresholds.** The trilemma verdict depends on three thresholds.
# Move each (quality: the FD of blurring with σ = 0.5 or 1.5 px, via `blurred_fd(n, sigma=...)`;
# speed: 1, 4 or 10 NFE) and report for which settings a family delivers all three. What
# does that tell you about reading such claims in papers?
#
# ## References
#
# - Z. Xiao, K. Kreis and A. Vahdat, "Tackling the Generative Learning Trilemma with Denoising
#   Diffusion GANs", ICLR 2022.
# - T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen and T. Aila, "Improved Precision and Recall
#   Metric for Assessing Generative Models", NeurIPS 2019.
# - M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler and S. Hochreiter, "GANs Trained by a Two
#   Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (FID).
# - M. Bińkowski, D. J. Sutherland, M. Arbel and A. Gretton, "Demystifying MMD GANs", ICLR 2018 (KID).
# - M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi and J. Yoo, "Reliable Fidelity and Diversity Metrics
#   for Generative Models", ICML 2020 (the weaknesses of k-NN precision and recall).
# - L. Theis, A. van den Oord and M. Bethge, "A note on the evaluation of generative models",
#   ICLR 2016 (likelihood, sample quality and why they disagree).
# - B. Efron and R. Tibshirani, "An Introduction to the Bootstrap", 1993.
