"""Multi-label ranking metrics in numpy: mAP per class and per sample,
best-threshold F1, precision@M.

`scores` and `labels` are (N images x C classes); labels are 0/1. Higher
scores mean "more likely present". Ties are handled as scikit-learn does:
tied scores form one threshold, never an order that depends on the sort.
"""
import numpy as np


def _ranked_counts(scores, labels):
    """True and predicted positive counts at each distinct threshold, highest first.

    Returns (thresholds, true_positives, predicted_positives): predicting
    every score >= thresholds[k] positive gives true_positives[k] hits among
    predicted_positives[k] predictions.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    hits = np.cumsum(labels[order], dtype=np.float64)
    # the last index of each run of equal scores: a threshold takes all ties
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return sorted_scores[last_of_run], hits[last_of_run], last_of_run + 1.0


def average_precision(scores, labels):
    """AP of one class: sum over thresholds of (recall step) x precision.

    Equals sklearn.metrics.average_precision_score; NaN where the class has
    no positive (AP is undefined there).
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, np.float64).ravel()
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    _, true_positives, predicted = _ranked_counts(scores, labels)
    recall_steps = np.diff(np.r_[0.0, true_positives]) / positives
    return float(np.sum(recall_steps * true_positives / predicted))


def mean_average_precision(scores, labels):
    """Macro mAP: the mean of the per-class APs over classes with a positive."""
    per_class = [average_precision(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
    return float(np.nanmean(per_class))


def sample_average_precision(scores, labels):
    """mAP per sample: the mean over images (with at least one positive) of
    the AP of that image's ranking of the classes."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    rows = [average_precision(scores[n], labels[n])
            for n in range(labels.shape[0]) if labels[n].any()]
    return float(np.mean(rows)) if rows else float("nan")


def best_f1(scores, labels):
    """F1 over all (image, class) decisions at the one global threshold that maximises it.

    Returns (f1, threshold): predicting every score >= threshold positive
    gives that micro-averaged F1 = 2 TP / (predicted + actual positives).
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, np.float64).ravel()
    positives = labels.sum()
    if positives == 0:
        return float("nan"), float("nan")
    thresholds, true_positives, predicted = _ranked_counts(scores, labels)
    f1 = 2.0 * true_positives / (predicted + positives)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def precision_at_m(scores, labels):
    """Mean over images of the fraction of the M top-scored classes that are
    true, M the image's own number of true labels (images with M = 0 skipped).

    Ties at the M-th score are broken by class index (stable sort), which is
    the one arbitrary choice here; with real-valued network scores ties are
    practically absent.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    counts = labels.sum(axis=1).astype(np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked_labels = np.take_along_axis(labels, order, axis=1)
    in_top_m = np.arange(labels.shape[1])[None, :] < counts[:, None]
    hits = (ranked_labels * in_top_m).sum(axis=1)
    has_labels = counts > 0
    return float(np.mean(hits[has_labels] / counts[has_labels]))


def chance_map(labels):
    """Expected macro mAP of scores that ignore the image: the mean class prevalence."""
    prevalence = np.asarray(labels, np.float64).mean(axis=0)
    return float(prevalence[prevalence > 0].mean())


def evaluate(scores, labels, tail=None):
    """All the demo's metrics as a dict; `tail` (class indices) adds the macro mAP over those."""
    f1, threshold = best_f1(scores, labels)
    result = {
        "mAP": mean_average_precision(scores, labels),
        "sample_mAP": sample_average_precision(scores, labels),
        "F1": f1,
        "F1_threshold": threshold,
        "P@M": precision_at_m(scores, labels),
    }
    if tail is not None:
        tail = np.asarray(tail, np.int64)
        result["tail_mAP"] = mean_average_precision(np.asarray(scores)[:, tail],
                                                    np.asarray(labels)[:, tail])
    return result
