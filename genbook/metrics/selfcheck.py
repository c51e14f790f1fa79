"""Check the evaluators and record their numbers: ``python -m genbook.metrics.selfcheck``.

A metric earns trust by ranking things whose order we know. At n = 1,000 images:

    train vs test  <  blurred train images  <  PCA-Gaussian samples  <  uniform noise

must hold for FD and for KID; real test images must get a conditional accuracy
equal to the evaluator's test accuracy; real captions must score near 1 in
caption adherence and shuffled captions far lower. The numbers go to
``_build/results/evaluation.json`` (``genbook.report.report``) and a table is printed.
"""

from __future__ import annotations

import time

import torch

from genbook.metrics.baselines import fit_pca_gaussian, gaussian_blur, reference_images, train_sample
from genbook.metrics.fashion_evaluator import (
    FashionEvaluator,
    conditional_accuracy,
    fashion_evaluator,
    fashion_fd,
    fashion_kid,
)
from genbook.metrics.shapes_evaluator import ShapesEvaluator, attribute_accuracies, caption_agreement, shapes_evaluator

LADDER = ("train", "blurred", "pca_gaussian", "uniform_noise")  # image sets in the order FD must rank them
BLUR_SIGMA = 1.0  # pixels
N_IMAGES = 1000


def image_ladder(n: int = N_IMAGES, seed: int = 0) -> dict[str, torch.Tensor]:
    """Image sets (n, 1, 28, 28) in [-1, 1] of known quality, best first (keys: ``LADDER``)."""
    generator = torch.Generator().manual_seed(seed)
    train = train_sample(n, seed)[0]
    return {
        "train": train,
        "blurred": gaussian_blur(train, BLUR_SIGMA),
        "pca_gaussian": fit_pca_gaussian().sample(n, generator),
        "uniform_noise": torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1,
    }


def check_fashion(n: int = N_IMAGES, evaluator: FashionEvaluator | None = None) -> dict[str, float]:
    """Evaluator accuracy, FD and KID of the ladder against ``reference_images(n)``, conditional accuracy, timing."""
    from genbook.data.fashion_mnist import fashion_mnist

    start = time.perf_counter()
    ev = evaluator if evaluator is not None else fashion_evaluator()
    out = {"fashion_load_or_train_s": time.perf_counter() - start}
    if "train_seconds" in ev.info:  # measured when the cached evaluator was trained
        out["fashion_train_s"] = ev.info["train_seconds"]
    if "train_cpu_seconds" in ev.info:
        out["fashion_train_cpu_s"] = ev.info["train_cpu_seconds"]
    x_test, y_test = fashion_mnist("test")
    out["fashion_test_accuracy"] = ev.accuracy(x_test, y_test)
    reference = reference_images(n)
    out["conditional_accuracy_real"] = conditional_accuracy(reference, y_test[:n], evaluator=ev)
    for name, images in image_ladder(n).items():
        if name == "train":
            start = time.perf_counter()
            out[f"fd_{name}"] = fashion_fd(images, reference, evaluator=ev)
            out["fd_seconds"] = time.perf_counter() - start
        else:
            out[f"fd_{name}"] = fashion_fd(images, reference, evaluator=ev)
        out[f"kid_{name}"] = fashion_kid(images, reference, evaluator=ev).mean
    return out


def check_shapes(n: int = N_IMAGES, evaluator: ShapesEvaluator | None = None, seed: int = 3) -> dict[str, float]:
    """Shapes evaluator accuracy per attribute on fresh images, and adherence of real vs shuffled captions."""
    from genbook.data.shapes import make_shapes

    start = time.perf_counter()
    ev = evaluator if evaluator is not None else shapes_evaluator()
    out = {"shapes_load_or_train_s": time.perf_counter() - start}
    if "train_seconds" in ev.info:  # measured when the cached evaluator was trained
        out["shapes_train_s"] = ev.info["train_seconds"]
    if "train_cpu_seconds" in ev.info:
        out["shapes_train_cpu_s"] = ev.info["train_cpu_seconds"]
    batch = make_shapes(n, seed=seed)
    for name, value in attribute_accuracies(ev.read(batch.images), batch.labels).items():
        out[f"shapes_accuracy_{name}"] = value
    real = caption_agreement(batch.images, batch.captions, evaluator=ev)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = caption_agreement(batch.images, [batch.captions[i] for i in order], evaluator=ev)
    out.update(
        adherence_real=real["adherence"],
        adherence_shuffled=shuffled["adherence"],
        exact_real=real["exact"],
        exact_shuffled=shuffled["exact"],
    )
    return out


def main() -> dict:
    from genbook.report import report

    start = time.perf_counter()
    fashion = check_fashion()
    shapes = check_shapes()
    fd = [fashion[f"fd_{name}"] for name in LADDER]
    kid = [fashion[f"kid_{name}"] for name in LADDER]
    accuracy_gap = abs(fashion["conditional_accuracy_real"] - fashion["fashion_test_accuracy"])
    checks = {
        "fashion accuracy >= 0.90": fashion["fashion_test_accuracy"] >= 0.90,
        "FD ranks train < blurred < PCA-Gaussian < noise": fd == sorted(fd),
        "KID ranks the same": kid == sorted(kid),
        "conditional accuracy within 2 points": accuracy_gap <= 0.02,
        "FD of 1000 images <= 5 s": fashion["fd_seconds"] <= 5,
        "shapes accuracies >= 0.98": min(v for k, v in shapes.items() if k.startswith("shapes_accuracy")) >= 0.98,
        "adherence real >= 0.98": shapes["adherence_real"] >= 0.98,
        "adherence shuffled far lower": shapes["adherence_shuffled"] <= shapes["adherence_real"] - 0.2,
    }
    metrics = {**fashion, **shapes}
    baselines = {"fd_real_vs_real": fashion["fd_train"], "fd_pca_gaussian": fashion["fd_pca_gaussian"]}
    record = report(
        "evaluation",
        metrics=metrics,
        baselines=baselines,
        wall_s=time.perf_counter() - start,
        n_images=N_IMAGES,
        checks=checks,
    )
    width = max(map(len, metrics))
    print(f"genbook evaluation self-check ({record['profile']} profile, {record['machine']})")
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {value:10.4f}")
    print("checks:")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    if not all(checks.values()):
        raise SystemExit(1)
    return record


if __name__ == "__main__":
    main()
