"""The Language-universal Aggregator (LA) of mERE (Eq. 4): one self-attention
layer, softmax(Q K^T / sqrt(d)) V with Q, K, V = h W_q, h W_k, h W_v.

Eq. 4 writes the attention alone; with `residual` (the default here) its
output is added to h, as in a transformer layer. Measured on the tiny test
corpus with a fresh CNN encoder, the bare attention (residual = false) makes
every token a near-uniform mix at initialization and the pointers did not
learn the head/tail direction in 120 steps, which the residual version does.

In training, the token states of `concat_sentences` docs of different
languages are concatenated before the attention (h_cat), so every token also
attends to a sentence in another language; at inference each doc goes
through LA alone. Groups are padded into one (groups, length, width) tensor
with a key mask, so all groups of a batch are one batched product. Prediction
needs no backward pass, so it attends within each doc in blocks of query
rows: memory grows with (block x doc length), not with (batch x longest doc
squared), which a 10,000-token doc in a batch would otherwise need.
"""
from typing import Callable, List, Sequence, Tuple

import numpy
from thinc.api import Model, glorot_uniform_init
from thinc.types import Floats2d, Ints1d

AggregatorInputs = Tuple[Floats2d, Ints1d, List[str]]

# attention scores held at once at prediction (16 MB of float32)
BLOCK_FLOATS = 1 << 22


def language_aggregator(width: int, concat_sentences: int = 2, residual: bool = True) -> Model[AggregatorInputs, Floats2d]:
    """Self-attention over (flat token vectors, doc lengths, doc languages).

    concat_sentences: s, how many docs (of different languages where the
        batch allows) are concatenated in training; 1 attends within each doc.
    residual: output h + attention (true) or the bare Eq. 4 (false).
    """
    if concat_sentences < 1:
        raise ValueError(f"concat_sentences must be >= 1, got {concat_sentences}.")
    return Model(
        "language_aggregator",
        _forward,
        init=_init,
        params={"W_q": None, "W_k": None, "W_v": None},
        dims={"nI": width, "nO": width},
        attrs={"concat_sentences": concat_sentences, "residual": residual},
    )


def _init(model: Model, X=None, Y=None) -> None:
    width = model.get_dim("nI")
    for name in ("W_q", "W_k", "W_v"):
        model.set_param(name, glorot_uniform_init(model.ops, (width, width)))


def group_docs(langs: Sequence[str], size: int, rng=numpy.random) -> List[List[int]]:
    """Random groups of `size` doc indices; a doc joins the first open group
    without a doc of its language, so groups mix languages where the batch
    allows it (a monolingual batch still gets groups of `size`)."""
    order = rng.permutation(len(langs)) if len(langs) else numpy.zeros((0,), dtype="int64")
    groups: List[List[int]] = []
    for i in order.tolist():
        for group in groups:
            if len(group) < size and all(langs[j] != langs[i] for j in group):
                group.append(i)
                break
        else:
            groups.append([i])
    # groups left short because of repeated languages are merged pairwise
    short = [g for g in groups if len(g) < size]
    full = [g for g in groups if len(g) >= size]
    merged: List[int] = []
    for g in short:
        merged.extend(g)
        if len(merged) >= size:
            full.append(merged[:size])
            merged = merged[size:]
    if merged:
        full.append(merged)
    return full


def _group_index(xp, lengths: numpy.ndarray, groups: List[List[int]]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(n_groups, max_len) row indices into the flat tokens and a validity mask."""
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64")
    rows = [numpy.concatenate([numpy.arange(offsets[d], offsets[d] + lengths[d]) for d in g]) for g in groups]
    max_len = max([len(r) for r in rows] + [1])
    index = numpy.zeros((len(groups), max_len), dtype="int64")
    mask = numpy.zeros((len(groups), max_len), dtype=bool)
    for i, r in enumerate(rows):
        index[i, : len(r)] = r
        mask[i, : len(r)] = True
    return xp.asarray(index), xp.asarray(mask)


def _forward(model: Model, inputs: AggregatorInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    X, lengths, langs = inputs
    ops = model.ops
    xp = ops.xp
    lengths_np = numpy.asarray(ops.to_numpy(lengths), dtype="int64")
    if not is_train:
        return _predict(model, X, lengths_np), _no_backprop
    size = model.attrs["concat_sentences"]
    docs = [i for i in range(len(langs)) if lengths_np[i] > 0]  # empty docs take no place in a group
    groups = [[docs[j] for j in g] for g in group_docs([langs[i] for i in docs], size)] if size > 1 else [[i] for i in docs]
    residual = model.attrs["residual"]
    if not groups:
        Y0 = X.copy() if residual else ops.alloc2f(*X.shape)
        return Y0, lambda dY: (dY.copy() if residual else ops.alloc2f(*X.shape), lengths, langs)
    index, mask = _group_index(xp, lengths_np, groups)
    W_q, W_k, W_v = (model.get_param(n) for n in ("W_q", "W_k", "W_v"))
    scale = 1.0 / numpy.sqrt(X.shape[1])
    Q, K, V = ((X @ W)[index] for W in (W_q, W_k, W_v))
    S = xp.einsum("gid,gjd->gij", Q, K) * scale
    S = xp.where(mask[:, None, :], S, -1e9)
    S = S - S.max(axis=2, keepdims=True)
    P = xp.exp(S) * mask[:, None, :]
    P /= P.sum(axis=2, keepdims=True)
    O = xp.einsum("gij,gjd->gid", P, V)
    Y = X.copy() if residual else ops.alloc2f(*X.shape)
    Y[index[mask]] += O[mask]

    def backprop(dY: Floats2d) -> AggregatorInputs:
        dO = dY[index] * mask[:, :, None]
        dP = xp.einsum("gid,gjd->gij", dO, V)
        dV = xp.einsum("gij,gid->gjd", P, dO)
        dS = P * (dP - (dP * P).sum(axis=2, keepdims=True)) * scale
        dQ = xp.einsum("gij,gjd->gid", dS, K)
        dK = xp.einsum("gij,gid->gjd", dS, Q)
        dX = dY.copy() if residual else ops.alloc2f(*X.shape)
        for W, name, d in ((W_q, "W_q", dQ), (W_k, "W_k", dK), (W_v, "W_v", dV)):
            d_rows = ops.alloc2f(*X.shape)
            d_rows[index[mask]] = d[mask]
            model.inc_grad(name, X.T @ d_rows)
            dX += d_rows @ W.T
        return dX, lengths, langs

    return Y, backprop


def _no_backprop(dY: Floats2d) -> AggregatorInputs:
    raise ValueError("The aggregator's prediction path keeps nothing for a backward pass: call it with is_train=True to train.")


def _predict(model: Model, X: Floats2d, lengths: numpy.ndarray) -> Floats2d:
    """Each doc attends over itself alone, BLOCK_FLOATS scores at a time."""
    xp = model.ops.xp
    W_q, W_k, W_v = (model.get_param(n) for n in ("W_q", "W_k", "W_v"))
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    scale = 1.0 / numpy.sqrt(X.shape[1])
    Y = X.copy() if model.attrs["residual"] else model.ops.alloc2f(*X.shape)
    start = 0
    for n in lengths.tolist():
        step = max(1, BLOCK_FLOATS // max(n, 1))
        K_d, V_d = K[start : start + n], V[start : start + n]
        for i in range(start, start + n, step):
            S = (Q[i : min(i + step, start + n)] @ K_d.T) * scale
            P = xp.exp(S - S.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            Y[i : i + P.shape[0]] += P @ V_d
        start += n
    return Y
