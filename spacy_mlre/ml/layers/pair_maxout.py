"""The pair classifier's first hidden layer, computed per entity where it can be.

A Maxout layer over a pair's features [head entity; tail entity; pair-only
features] is linear before the max, so W [e_h; e_t; f] = W_h e_h + W_t e_t + W_f f.
Entities are far fewer than pairs (CrossRE: ~12k entities, ~80k pairs in the
test split), so projecting each entity once with W_h and W_t and gathering the
two projections per pair gives the same outputs as Maxout on the concatenated
features at a fraction of the cost, and never builds the (pairs x features)
matrix. The backward pass mirrors it: the pairs' gradients are summed per entity
first, then multiplied once per entity.
"""
from typing import Callable, Optional, Tuple

from thinc.api import Model, glorot_uniform_init, zero_init
from thinc.types import Floats2d, Ints2d

PairInputs = Tuple[Floats2d, Ints2d, Floats2d]


def pair_maxout(nO: Optional[int] = None, nP: int = 3) -> Model[PairInputs, Floats2d]:
    """Maxout over (entity vectors E, pair rows (head, tail) into E, pair features F).

    Same parameters and outputs as thinc's Maxout on [E[head]; E[tail]; F]:
    W is (nO, nP, 2 * width(E) + width(F)), its columns in that order.
    """
    return Model(
        "pair_maxout",
        _forward,
        init=_init,
        dims={"nO": nO, "nP": nP, "nI": None, "nE": None},
        params={"W": None, "b": None},
    )


def _init(model: Model, X: Optional[PairInputs] = None, Y: Optional[Floats2d] = None) -> None:
    if X is not None:
        ents, _, feats = X
        model.set_dim("nE", ents.shape[1])
        model.set_dim("nI", 2 * ents.shape[1] + feats.shape[1])
    if Y is not None:
        model.set_dim("nO", Y.shape[1])
    nO, nP, nI = model.get_dim("nO"), model.get_dim("nP"), model.get_dim("nI")
    model.set_param("W", glorot_uniform_init(model.ops, (nO, nP, nI)))
    model.set_param("b", zero_init(model.ops, (nO, nP)))


def _forward(model: Model, inputs: PairInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    ents, pairs, feats = inputs
    ops, xp = model.ops, model.ops.xp
    nO, nP, nI, nE = (model.get_dim(name) for name in ("nO", "nP", "nI", "nE"))
    nH = nO * nP
    W = ops.reshape2f(model.get_param("W"), nH, nI)
    # (2 * nH, nE): the head block's rows, then the tail block's
    W_ents = xp.ascontiguousarray(W[:, : 2 * nE].reshape(nH, 2, nE).transpose(1, 0, 2).reshape(2 * nH, nE))
    W_feats = xp.ascontiguousarray(W[:, 2 * nE :])
    n_ents, n_pairs = ents.shape[0], pairs.shape[0]
    if n_pairs == 0:
        return ops.alloc2f(0, nO), lambda d_best: (ops.alloc2f(*ents.shape), pairs, ops.alloc2f(*feats.shape))
    # row 2i: entity i projected as a head, row 2i + 1: as a tail
    projected = ops.reshape2f(ops.gemm(ents, W_ents, trans2=True), 2 * n_ents, nH)
    rows = ops.asarray2i(xp.stack([2 * pairs[:, 0], 2 * pairs[:, 1] + 1], axis=1), dtype="int32")
    Y = ops.gather_add(projected, rows)
    has_feats = W_feats.shape[1] > 0
    if has_feats:
        Y += ops.gemm(feats, W_feats, trans2=True)
    Y += ops.reshape1f(model.get_param("b"), nH)
    best, which = ops.maxout(ops.reshape3f(Y, n_pairs, nO, nP))

    def backprop(d_best: Floats2d) -> PairInputs:
        dY = ops.reshape2f(ops.backprop_maxout(d_best, which, nP), n_pairs, nH)
        model.inc_grad("b", ops.reshape2f(dY.sum(axis=0), nO, nP))
        d_projected = ops.alloc2f(2 * n_ents, nH)
        ops.scatter_add(d_projected, rows[:, 0], dY)
        ops.scatter_add(d_projected, rows[:, 1], dY)
        d_projected = ops.reshape2f(d_projected, n_ents, 2 * nH)
        dW_ents = ops.gemm(d_projected, ents, trans1=True).reshape(2, nH, nE).transpose(1, 0, 2).reshape(nH, 2 * nE)
        dW_feats = ops.gemm(dY, feats, trans1=True) if has_feats else ops.alloc2f(nH, nI - 2 * nE)
        model.inc_grad("W", ops.reshape3f(xp.concatenate([dW_ents, dW_feats], axis=1), nO, nP, nI))
        d_ents = ops.gemm(d_projected, W_ents)
        d_feats = ops.gemm(dY, W_feats) if has_feats else ops.alloc2f(*feats.shape)
        return d_ents, pairs, d_feats

    return best, backprop
