"""E_b = E_w + E_a: a doc vector broadcast to every token (kernel paper, Eq. 2).

The paper uses BERT's CLS embedding as E_a: add_given_doc_vector adds a doc
vector the encoder gives (spacy_mlre.TransformerHiddenListener.v1's CLS row); a
tok2vec or a stock listener gives only token vectors, so add_doc_vector pools
E_a from them (mean or max over the doc's tokens).
"""
from typing import Callable, Tuple

from thinc.api import Model
from thinc.types import Floats2d, Ints1d

DOC_POOLINGS = ("mean", "max")


def add_doc_vector(pooling: str = "mean") -> Model[Tuple[Floats2d, Ints1d], Floats2d]:
    """(flat token vectors, doc lengths) -> token vectors plus their doc's pooled vector."""
    if pooling not in DOC_POOLINGS:
        raise ValueError(f"Unknown doc vector pooling {pooling!r}: choose one of {', '.join(DOC_POOLINGS)}.")
    return Model(f"add_doc_{pooling}", _forward, attrs={"pooling": pooling})


def _forward(model: Model, inputs: Tuple[Floats2d, Ints1d], is_train: bool) -> Tuple[Floats2d, Callable]:
    X, lengths = inputs
    ops = model.ops
    lengths = ops.asarray1i(lengths)
    # empty docs contribute no rows; pool only over the non-empty ones
    nonempty = ops.xp.nonzero(lengths)[0]
    lens = lengths[nonempty]
    if model.attrs["pooling"] == "mean":
        pooled = ops.reduce_mean(X, lens)
    else:
        pooled, which = ops.reduce_max(X, lens)
    Y = X + ops.xp.repeat(pooled, lens, axis=0)

    def backprop(dY: Floats2d) -> Tuple[Floats2d, Ints1d]:
        d_pooled = ops.reduce_sum(dY, lens)
        if model.attrs["pooling"] == "mean":
            d_from_pool = ops.backprop_reduce_mean(d_pooled, lens)
        else:
            d_from_pool = ops.backprop_reduce_max(d_pooled, which, lens)
        return dY + d_from_pool, lengths

    return Y, backprop


def add_given_doc_vector() -> Model[Tuple[Floats2d, Floats2d, Ints1d], Floats2d]:
    """(flat token vectors, (n_docs, width) doc vectors, doc lengths) -> token
    vectors plus their doc's vector; backprop gives (d tokens, d doc vectors, lengths)."""
    return Model("add_doc_given", _given_forward)


def _given_forward(model: Model, inputs: Tuple[Floats2d, Floats2d, Ints1d], is_train: bool) -> Tuple[Floats2d, Callable]:
    X, D, lengths = inputs
    ops = model.ops
    lengths = ops.asarray1i(lengths)
    doc_of = ops.xp.repeat(ops.xp.arange(D.shape[0], dtype="int32"), lengths)
    Y = X + D[doc_of]

    def backprop(dY: Floats2d) -> Tuple[Floats2d, Floats2d, Ints1d]:
        dD = ops.alloc2f(*D.shape)
        ops.scatter_add(dD, doc_of, dY)
        return dY, dD, lengths

    return Y, backprop
