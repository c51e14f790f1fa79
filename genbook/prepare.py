"""``make data``: get every dataset and shared evaluator ready before chapters run.

    python -m genbook.prepare

Loads (and so caches under ``data/``) Fashion-MNIST and the Shakespeare corpus,
and trains the shared evaluators (the Fashion-MNIST classifier behind FD and the
shapes attribute reader) once. Running it up front means chapters executed side
by side never race to download or train the same thing. A missing dataset stops here with the
message that says how to get it.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    from .data.fashion_mnist import load_fashion_mnist
    from .data.shakespeare import load_works
    from .metrics.fashion_evaluator import fashion_evaluator
    from .metrics.shapes_evaluator import shapes_evaluator

    steps = [
        ("Fashion-MNIST train", lambda: f"{len(load_fashion_mnist('train')[0])} images"),
        ("Fashion-MNIST test", lambda: f"{len(load_fashion_mnist('test')[0])} images"),
        ("Shakespeare", lambda: f"{len(load_works())} works"),
        ("Fashion-MNIST evaluator", lambda: f"test acc {fashion_evaluator('cpu').info['test_accuracy']:.3f}"),
        ("shapes evaluator", lambda: f"min acc {min(shapes_evaluator('cpu').info['held_out_accuracy'].values()):.3f}"),
    ]
    for name, run in steps:
        start = time.perf_counter()
        try:
            what = run()
        except Exception as err:
            print(f"genbook.prepare: {name}: {err}", file=sys.stderr)
            return 1
        print(f"ready: {name:<24} {what:<16} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
