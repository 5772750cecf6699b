"""Span and pair blocks over the flat token matrix of a batch.

Every block takes token vectors of all docs concatenated (n_tokens, width) and
integer (start, end) offsets into them, so a whole batch is one gather, one
reduction and one scatter in backprop, with no Python loop per span or pair.
"""
from typing import Callable, Tuple

from thinc.api import Model
from thinc.types import Floats2d, Ints1d, Ints2d, Ragged

POOLINGS = ("mean", "max", "first")


def span_token_indices(xp, spans: Ints2d) -> Tuple[Ints1d, Ints1d]:
    """Flat token indices covered by each (start, end) span, and span lengths.

    For spans (5, 8), (8, 10): indices [5, 6, 7, 8, 9], lengths [3, 2].
    """
    lengths = (spans[:, 1] - spans[:, 0]).astype("int32")
    total = int(lengths.sum())
    if total == 0:
        return xp.zeros((0,), dtype="int64"), lengths
    first_of_span = xp.cumsum(lengths) - lengths
    # position within its span, then shifted to the span's start
    within = xp.arange(total) - xp.repeat(first_of_span, lengths)
    indices = xp.repeat(spans[:, 0], lengths) + within
    return indices.astype("int64"), lengths


def span_pooler(pooling: str = "mean") -> Model[Tuple[Floats2d, Ints2d], Floats2d]:
    """Pool the token vectors of each (non-empty) span: mean, max, or first token."""
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown span pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
    return Model(f"span_{pooling}", _span_pool_forward, attrs={"pooling": pooling})


def _span_pool_forward(
    model: Model, inputs: Tuple[Floats2d, Ints2d], is_train: bool
) -> Tuple[Floats2d, Callable]:
    X, spans = inputs
    ops = model.ops
    spans = ops.asarray(spans, dtype="int64")
    indices, lengths = span_token_indices(ops.xp, spans)
    lengths = ops.asarray1i(lengths)
    gathered = X[indices]
    pooling = model.attrs["pooling"]
    if pooling == "mean":
        Y = ops.reduce_mean(gathered, lengths)
    elif pooling == "max":
        Y, which = ops.reduce_max(gathered, lengths)
    else:
        Y, firsts = ops.reduce_first(gathered, lengths)
    n_tokens = X.shape[0]

    def backprop(dY: Floats2d) -> Tuple[Floats2d, Ints2d]:
        if pooling == "mean":
            d_gathered = ops.backprop_reduce_mean(dY, lengths)
        elif pooling == "max":
            d_gathered = ops.backprop_reduce_max(dY, which, lengths)
        else:
            d_gathered = ops.backprop_reduce_first(dY, firsts)
        dX = ops.alloc2f(n_tokens, dY.shape[1])
        ops.scatter_add(dX, ops.asarray1i(indices), d_gathered)
        return dX, spans

    return Y, backprop


def mean_between() -> Model[Tuple[Floats2d, Ints2d], Floats2d]:
    """Mean of the token vectors in [start, end) per row; zeros when empty.

    Used for the context between two entities, which is empty for adjacent or
    overlapping entities. Prefix sums make each row O(1) in the span length.
    """
    return Model("mean_between", _mean_between_forward)


def _mean_between_forward(
    model: Model, inputs: Tuple[Floats2d, Ints2d], is_train: bool
) -> Tuple[Floats2d, Callable]:
    X, spans = inputs
    ops = model.ops
    xp = ops.xp
    spans = ops.asarray(spans, dtype="int64")
    starts, ends = spans[:, 0], xp.maximum(spans[:, 1], spans[:, 0])
    lengths = (ends - starts).astype("float32")
    denom = xp.maximum(lengths, 1.0)[:, None]
    prefix = xp.concatenate([xp.zeros((1, X.shape[1]), dtype=X.dtype), xp.cumsum(X, axis=0)])
    Y = (prefix[ends] - prefix[starts]) / denom
    n_tokens, width = X.shape

    def backprop(dY: Floats2d) -> Tuple[Floats2d, Ints2d]:
        # d prefix[k] = sum of +dY over rows ending at k, -dY over rows starting at k;
        # dX[i] = sum_{k > i} d prefix[k]  (a reversed cumulative sum)
        scaled = dY / denom
        d_prefix = ops.alloc2f(n_tokens + 1, width)
        ops.scatter_add(d_prefix, ops.asarray1i(ends), scaled)
        ops.scatter_add(d_prefix, ops.asarray1i(starts), -scaled)
        dX = xp.cumsum(d_prefix[::-1], axis=0)[::-1][1:]
        return xp.ascontiguousarray(dX, dtype="float32"), spans

    return Y, backprop



def extract_spans() -> Model[Tuple[Ragged, Ragged], Ragged]:
    """spaCy's `extract_spans` (the same inputs and output: token vectors per
    doc, (start, end) spans per doc -> the spans' token vectors), with the
    token indices built by array operations instead of a Python loop per span."""
    return Model("extract_spans", _extract_spans_forward)


def _extract_spans_forward(model: Model, inputs: Tuple[Ragged, Ragged], is_train: bool) -> Tuple[Ragged, Callable]:
    X, spans = inputs
    ops, xp = model.ops, model.ops.xp
    doc_starts = xp.cumsum(X.lengths) - X.lengths
    span_doc = xp.repeat(xp.arange(len(spans.lengths)), spans.lengths)
    flat_spans = spans.dataXd.astype("int64") + doc_starts[span_doc][:, None]
    indices, lengths = span_token_indices(xp, flat_spans)
    Y = Ragged(X.dataXd[indices], ops.asarray1i(lengths))
    x_shape, x_lengths = X.dataXd.shape, X.lengths

    def backprop(dY: Ragged) -> Tuple[Ragged, Ragged]:
        dX = ops.alloc2f(*x_shape)
        ops.scatter_add(dX, ops.asarray1i(indices), dY.dataXd)
        return Ragged(dX, x_lengths), spans

    return Y, backprop
