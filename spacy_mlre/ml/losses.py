"""Label losses and decoding shared by the pipe and the models.

Rows are candidate pairs (pair-scoring models) or docs (joint models); the
outputs are one per label, plus a last no-relation output when single-label.
One place for both, so the pipe's decoding and a joint model's (MERE decodes
relations before its span pointers) cannot drift apart.
"""
from typing import Tuple

import numpy

EPS = 1e-7


def activate(logits: numpy.ndarray, multi_label: bool) -> numpy.ndarray:
    """Sigmoid per output (multi-label) or softmax over outputs (single-label)."""
    logits = numpy.asarray(logits, dtype="float32")
    if multi_label:
        return 1.0 / (1.0 + numpy.exp(-logits))
    shifted = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def target_distribution(targets: numpy.ndarray) -> numpy.ndarray:
    """Single-label targets over labels + no-relation: several gold labels on
    one row share the mass (no label is dropped); a row without one is
    no-relation."""
    positive = targets.any(axis=1)
    n_gold = targets.sum(axis=1, keepdims=True)
    return numpy.concatenate([targets / numpy.maximum(n_gold, 1.0), (~positive)[:, None]], axis=1).astype("float32")


def row_weights(targets: numpy.ndarray, negative_weight: float = 1.0, negative_sampling: float = 1.0) -> numpy.ndarray:
    """Per-row loss weights: rows without a gold label weigh `negative_weight`
    and only a random `negative_sampling` share of them is kept; normalised
    by the number of kept rows, so the loss is a mean over them."""
    positive = targets.any(axis=1)
    weights = numpy.where(positive, 1.0, negative_weight).astype("float32")
    if negative_sampling < 1.0:
        weights[~positive & (numpy.random.random(len(weights)) >= negative_sampling)] = 0.0
    return weights / max(float((weights > 0).sum()), 1.0)


def label_loss(logits: numpy.ndarray, targets: numpy.ndarray, weights: numpy.ndarray, multi_label: bool) -> Tuple[float, numpy.ndarray]:
    """Binary (multi-label) or categorical (single-label) cross-entropy of
    `logits` (n_rows, n_outputs) against 0/1 `targets` (n_rows, n_labels),
    weighted per row; returns the loss and its gradient w.r.t. the logits."""
    probs = activate(logits, multi_label)
    if multi_label:
        per_row = -(targets * numpy.log(probs + EPS) + (1 - targets) * numpy.log(1 - probs + EPS)).sum(axis=1)
        d_logits = probs - targets
    else:
        dist = target_distribution(targets)
        per_row = -(dist * numpy.log(probs + EPS)).sum(axis=1)
        d_logits = probs - dist
    loss = float((per_row * weights).sum())
    return loss, (d_logits * weights[:, None]).astype("float32")


def decode_labels(probs: numpy.ndarray, thresholds: numpy.ndarray, multi_label: bool) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(rows, label columns) predicted: every label at or above its threshold
    (multi-label), or the most probable label when it is at or above its
    threshold (single-label; the last output, no-relation, is not compared).

    Single-label: at thresholds of 0.5 or more this is the argmax over all
    outputs (a label above 0.5 beats no-relation). Below 0.5 a label can win
    where no-relation is the argmax: models trained on mostly unrelated pairs
    (AMNRE's bags) put no-relation first almost everywhere while their label
    probabilities still rank well, and a threshold tuned on dev reads them."""
    n_labels = len(thresholds)
    probs = numpy.asarray(probs)
    if multi_label:
        rows, cols = numpy.nonzero(probs[:, :n_labels] >= numpy.asarray(thresholds)[None, :])
        return rows, cols
    if not probs.size or not n_labels:
        return numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64")
    best = probs[:, :n_labels].argmax(axis=1)
    best_score = probs[numpy.arange(len(best)), best]
    keep = best_score >= numpy.asarray(thresholds)[best]
    rows = numpy.nonzero(keep)[0]
    return rows, best[rows]
