"""The four entity pointers of mERE (Eq. 9) and their loss and decoding.

For a doc and a relation r, each token i gets four scores, one per pointer
y in (head start, head end, tail start, tail end):

    score_y(i) = tanh([h_i ; r_e] W_y) U_y,   r_e = E_r[r]

Since [h ; r] W_y = h W_y_tok + r W_y_rel, the token half is computed once
per token for all four pointers and the relation half once per query, so a
query (doc, relation) costs one broadcast add, tanh and dot product per token.
Each pointer is a softmax over the doc's tokens (Eq. 12 uses its cross-entropy).
"""
from typing import Callable, List, Optional, Tuple

import numpy
from thinc.api import Model, glorot_uniform_init, normal_init
from thinc.types import Floats2d, Floats3d, Ints1d, Ints2d
from thinc.util import get_array_module

PointerInputs = Tuple[Floats2d, Ints1d, Ints2d]
PointerOutputs = Tuple[Floats3d, numpy.ndarray]
N_POINTERS = 4
MASKED = -1e4


def entity_pointers(width: int, nR: Optional[int] = None) -> Model[PointerInputs, PointerOutputs]:
    """Pointer logits for queries over (flat token vectors, doc lengths,
    queries (n, 2) = doc index, relation index).

    Returns (n_queries, max_len, 4) logits (padding at MASKED) and the
    (n_queries, max_len) mask of real tokens. attrs["freeze_relations"] keeps
    the relation embedding table E_r fixed (mERE's second stage).
    """
    return Model(
        "entity_pointers",
        _forward,
        init=_init,
        params={"W_tok": None, "W_rel": None, "U": None, "E_r": None},
        dims={"nI": width, "nR": nR},
        attrs={"freeze_relations": False},
    )


def _init(model: Model, X=None, Y=None) -> None:
    width = model.get_dim("nI")
    if not model.has_dim("nR") or not model.get_dim("nR"):
        raise ValueError("entity_pointers needs the number of relations (dim nR) before initialize.")
    ops = model.ops
    # W_y in R^{2d x d} for each pointer, split into its token and relation halves
    W = glorot_uniform_init(ops, (2 * width, N_POINTERS * width))
    model.set_param("W_tok", ops.xp.ascontiguousarray(W[:width]))
    model.set_param("W_rel", ops.xp.ascontiguousarray(W[width:]))
    model.set_param("U", glorot_uniform_init(ops, (N_POINTERS, width)))
    model.set_param("E_r", normal_init(ops, (model.get_dim("nR"), width)))


def _forward(model: Model, inputs: PointerInputs, is_train: bool) -> Tuple[PointerOutputs, Callable]:
    S, lengths, queries = inputs
    ops = model.ops
    xp = ops.xp
    width = model.get_dim("nI")
    lengths = xp.asarray(lengths, dtype="int64")
    queries = xp.asarray(queries, dtype="int64").reshape((-1, 2))
    offsets = xp.concatenate([xp.zeros((1,), dtype="int64"), xp.cumsum(lengths)[:-1]])
    q_doc, q_rel = queries[:, 0], queries[:, 1]
    q_len = lengths[q_doc]
    max_len = int(q_len.max()) if q_len.shape[0] else 1
    positions = xp.arange(max(max_len, 1))
    mask = positions[None, :] < q_len[:, None]
    index = xp.where(mask, offsets[q_doc][:, None] + positions[None, :], 0)
    W_tok, W_rel, U, E_r = (model.get_param(n) for n in ("W_tok", "W_rel", "U", "E_r"))
    A = S @ W_tok
    R = E_r[q_rel] @ W_rel
    n_q = queries.shape[0]
    Z = xp.tanh(A[index] + R[:, None, :]).reshape((n_q, max_len, N_POINTERS, width))
    logits = (Z * U[None, None]).sum(axis=3)
    logits = xp.where(mask[:, :, None], logits, MASKED).astype("float32")

    def backprop(d_logits: Floats3d) -> PointerInputs:
        d_logits = d_logits * mask[:, :, None]
        model.inc_grad("U", xp.einsum("qlp,qlpd->pd", d_logits, Z))
        d_pre = ((d_logits[:, :, :, None] * U[None, None]) * (1.0 - Z * Z)).reshape((n_q, max_len, N_POINTERS * width))
        dA = ops.alloc2f(*A.shape)
        ops.scatter_add(dA, ops.asarray1i(index[mask]), xp.ascontiguousarray(d_pre[mask]))
        model.inc_grad("W_tok", S.T @ dA)
        dR = d_pre.sum(axis=1)
        model.inc_grad("W_rel", E_r[q_rel].T @ dR)
        if not model.attrs["freeze_relations"]:
            d_E_r = ops.alloc2f(*E_r.shape)
            ops.scatter_add(d_E_r, ops.asarray1i(q_rel), dR @ W_rel.T)
            model.inc_grad("E_r", d_E_r)
        return dA @ W_tok.T, lengths, queries

    return (logits, mask), backprop


def pointer_loss(logits: Floats3d, mask, targets: Ints2d, weight: float = 1.0) -> Tuple[float, Floats3d]:
    """Sum of the four pointers' cross-entropies (softmax over the doc's
    tokens), averaged over queries and scaled by `weight` (Eq. 12: alpha / 2).

    targets: (n_queries, 4) token index of head start, head end (inclusive),
    tail start, tail end (inclusive).
    """
    xp = get_array_module(logits)
    n_q = logits.shape[0]
    if n_q == 0:
        return 0.0, xp.zeros(logits.shape, dtype="float32")
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = xp.exp(shifted) * mask[:, :, None]
    probs /= probs.sum(axis=1, keepdims=True)
    targets = xp.asarray(targets, dtype="int64")
    rows = xp.arange(n_q)[:, None]
    cols = xp.arange(N_POINTERS)[None, :]
    picked = probs[rows, targets, cols]
    loss = float(-xp.log(picked + 1e-9).sum() / n_q * weight)
    d_logits = probs.copy()
    d_logits[rows, targets, cols] -= 1.0
    return loss, (d_logits * (weight / n_q)).astype("float32")


def _log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    shifted = x - x.max(axis=0, keepdims=True)
    return shifted - numpy.log(numpy.exp(shifted).sum(axis=0, keepdims=True))


def decode_spans(
    logits: numpy.ndarray, entities: Optional[numpy.ndarray] = None, max_width: int = 0
) -> Optional[Tuple[int, int, int, int]]:
    """The best (head start, head end, tail start, tail end) of one query,
    ends exclusive, from its (doc_length, 4) pointer logits.

    entities: (n, 2) allowed spans (doc.ents); head and tail are then two
        different entities, maximising the sum of their four log-probabilities.
        With fewer than two entities there is no pair: None.
    Without entities: the best span with start <= end (at most `max_width`
    tokens when > 0) for the head, then the best other span for the tail.
    """
    n_tokens = logits.shape[0]
    if n_tokens == 0:
        return None
    lp = _log_softmax(numpy.asarray(logits, dtype="float64"))
    if entities is not None:
        ents = numpy.asarray(entities, dtype="int64").reshape((-1, 2))
        if ents.shape[0] < 2:
            return None
        head = lp[ents[:, 0], 0] + lp[ents[:, 1] - 1, 1]
        tail = lp[ents[:, 0], 2] + lp[ents[:, 1] - 1, 3]
        pair = head[:, None] + tail[None, :]
        numpy.fill_diagonal(pair, -numpy.inf)
        h, t = numpy.unravel_index(int(pair.argmax()), pair.shape)
        return int(ents[h, 0]), int(ents[h, 1]), int(ents[t, 0]), int(ents[t, 1])
    starts = numpy.arange(n_tokens)
    valid = starts[None, :] >= starts[:, None]
    if max_width > 0:
        valid &= starts[None, :] - starts[:, None] < max_width
    head = numpy.where(valid, lp[:, 0][:, None] + lp[:, 1][None, :], -numpy.inf)
    hs, he = numpy.unravel_index(int(head.argmax()), head.shape)
    tail = numpy.where(valid, lp[:, 2][:, None] + lp[:, 3][None, :], -numpy.inf)
    if n_tokens > 1:
        tail[hs, he] = -numpy.inf
    ts, te = numpy.unravel_index(int(tail.argmax()), tail.shape)
    return int(hs), int(he) + 1, int(ts), int(te) + 1


def query_targets(gold: List[numpy.ndarray]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Queries (doc, relation) and pointer targets from per-doc gold rows
    (head start, head end, tail start, tail end, relation), ends exclusive."""
    rows = [numpy.concatenate([numpy.full((len(g), 1), i), g[:, 4:5]], axis=1) for i, g in enumerate(gold) if len(g)]
    if not rows:
        return numpy.zeros((0, 2), dtype="int64"), numpy.zeros((0, N_POINTERS), dtype="int64")
    queries = numpy.concatenate(rows).astype("int64")
    spans = numpy.concatenate([g[:, :4] for g in gold if len(g)]).astype("int64")
    targets = spans - numpy.array([0, 1, 0, 1])
    return queries, targets
