"""The kernel-matrix relation layer (Li & Tian, kernel-matrix-downstream-re).

Per relation i the paper scores every token pair (m, n) of a doc with an
asymmetric kernel S_i = (E_b W_hi)(E_p W_ti)^T (Eq. 3-4), squashes it with a
sigmoid (Eq. 5) and scores an entity pair by the mean probability over its
head-token x tail-token block. The loss (Eq. 8-10) is a binary cross-entropy
over the elements of each block, averaged per block and summed over relations.

Only elements inside entity blocks reach the score or the loss (the mask M of
Eq. 6 zeroes the rest), so S is computed over the entity tokens of each doc,
padded per batch: (docs, relations, L', L') with L' the most entity tokens of
any doc, instead of the full (l x l) matrix. The values are the same.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy
from thinc.api import Model
from thinc.types import Floats2d, Ints1d, Ragged

from ..inputs import Candidates
from .spans import span_token_indices

EPS = 1e-6


@dataclass
class BlockIndex:
    """Where the entity blocks of a batch's candidate pairs live.

    tokens: (n_docs, L') flat token index of each doc's entity tokens (entities in
        order, their tokens concatenated), padded with 0.
    mask: (n_docs, L') 1.0 for real positions.
    elem_doc, elem_row, elem_col: (n_elems,) doc, head position and tail position
        (into `tokens`) of every element of every block, pair after pair.
    block_sizes: (n_pairs,) |head| x |tail| per pair.
    """

    tokens: numpy.ndarray
    mask: numpy.ndarray
    elem_doc: numpy.ndarray
    elem_row: numpy.ndarray
    elem_col: numpy.ndarray
    block_sizes: numpy.ndarray


def build_block_index(cands: Candidates, doc_lengths) -> BlockIndex:
    """Block positions for all pairs with array operations (no loop per pair)."""
    n_docs = len(cands.ent_lengths)
    spans = cands.global_spans(doc_lengths)
    tok_idx, ent_len = span_token_indices(numpy, spans)
    ent_len = ent_len.astype("int64")
    ent_doc = numpy.repeat(numpy.arange(n_docs), cands.ent_lengths)
    doc_tokens = numpy.bincount(ent_doc, weights=ent_len, minlength=n_docs).astype("int64")
    width = max(int(doc_tokens.max()) if n_docs else 0, 1)
    # position of each entity token within its doc's entity-token list
    doc_first = numpy.cumsum(doc_tokens) - doc_tokens
    tok_doc = numpy.repeat(ent_doc, ent_len)
    tok_pos = numpy.arange(len(tok_idx)) - doc_first[tok_doc]
    tokens = numpy.zeros((n_docs, width), dtype="int64")
    mask = numpy.zeros((n_docs, width), dtype="float32")
    tokens[tok_doc, tok_pos] = tok_idx
    mask[tok_doc, tok_pos] = 1.0
    ent_pos = (numpy.cumsum(ent_len) - ent_len) - doc_first[ent_doc]
    heads, tails = cands.pairs[:, 0], cands.pairs[:, 1]
    n_head, n_tail = ent_len[heads], ent_len[tails]
    sizes = n_head * n_tail
    pair_of = numpy.repeat(numpy.arange(len(sizes)), sizes)
    within = numpy.arange(int(sizes.sum())) - numpy.repeat(numpy.cumsum(sizes) - sizes, sizes)
    rows = ent_pos[heads][pair_of] + within // n_tail[pair_of]
    cols = ent_pos[tails][pair_of] + within % n_tail[pair_of]
    return BlockIndex(tokens, mask, ent_doc[heads][pair_of], rows, cols, sizes)


def block_bce(logits: Floats2d, block_sizes: Ints1d, targets: Floats2d, weights: Floats2d, xp=numpy) -> Tuple[float, Floats2d]:
    """Eq. 8-10: BCE of every block element against its pair's label, averaged
    over the block, weighted per pair, summed over relations.

    logits: (n_elems, nO) the kernel scores S of the block elements, pair after pair.
    targets: (n_pairs, nO) 0/1; weights: (n_pairs,) pair weights.
    Returns the loss and its gradient w.r.t. the element logits S:
    w * (sigmoid(s) - y) / |B|. The BCE is computed from the logits
    (softplus(s) - y * s), so saturated elements keep their true loss.
    """
    sizes = xp.asarray(block_sizes)
    scale = xp.repeat(weights / sizes, sizes)[:, None]
    y = xp.repeat(targets, sizes, axis=0)
    bce = xp.logaddexp(0, logits) - y * logits
    probs = _sigmoid(logits, xp)
    return float((bce * scale).sum()), (scale * (probs - y)).astype("float32")


def _sigmoid(x, xp):
    """Overflow-free sigmoid (kernel scores can be large in magnitude)."""
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


KernelOutput = Tuple[Floats2d, Ragged]


def kernel_scorer(projection_width: int = 64, nO=None, nI=None) -> Model[Tuple[Floats2d, Floats2d, BlockIndex], KernelOutput]:
    """Block-mean probability of every relation for every pair, as a logit,
    and the kernel scores S of every block element.

    Inputs: E_b and E_p as flat (n_tokens, nI) batch matrices and the BlockIndex.
    W_h, W_t: (nI, nO * projection_width): the paper's h x h kernels per relation
    narrowed to `projection_width`, so hundreds of relations stay affordable.
    Output: the pair logits (n_pairs, nO), what the pipe decodes, and the
    element scores as a Ragged (n_elems, nO) with one row per element and the
    block sizes as lengths, what the block-averaged BCE of Eq. 9 reads.
    Backprop takes a gradient for either or both (None for one not used).
    """
    return Model(
        "kernel_scorer",
        _kernel_forward,
        init=_kernel_init,
        dims={"nO": nO, "nI": nI, "nK": projection_width},
        params={"W_h": None, "W_t": None},
    )


def _kernel_init(model: Model, X=None, Y=None) -> None:
    if X is not None:
        model.set_dim("nI", X[0].shape[1], force=True)
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    nI, nO, nK = model.get_dim("nI"), model.get_dim("nO"), model.get_dim("nK")
    # var(W) = 1 / (nI sqrt(nK)): with unit-variance inputs S starts at unit
    # variance, so the sigmoids are not saturated whatever the widths
    std = (nI * numpy.sqrt(nK)) ** -0.5
    for name in ("W_h", "W_t"):
        W = numpy.random.normal(0.0, std, (nI, nO * nK)).astype("float32")
        model.set_param(name, model.ops.asarray2f(W))


def _kernel_forward(model: Model, inputs: Tuple[Floats2d, Floats2d, BlockIndex], is_train: bool) -> Tuple[KernelOutput, Callable]:
    Eb, Ep, index = inputs
    ops = model.ops
    xp = ops.xp
    nO, nK = model.get_dim("nO"), model.get_dim("nK")
    W_h, W_t = model.get_param("W_h"), model.get_param("W_t")
    tokens, mask = xp.asarray(index.tokens), xp.asarray(index.mask)[:, :, None]
    e_doc, e_row, e_col = (xp.asarray(a) for a in (index.elem_doc, index.elem_row, index.elem_col))
    sizes = ops.asarray1i(index.block_sizes)
    n_docs, width = tokens.shape
    Xh, Xt = Eb[tokens] * mask, Ep[tokens] * mask  # (docs, L', nI)
    # (docs, L', nO*nK) -> (docs, nO, L', nK)
    H = (Xh @ W_h).reshape(n_docs, width, nO, nK).transpose(0, 2, 1, 3)
    T = (Xt @ W_t).reshape(n_docs, width, nO, nK).transpose(0, 2, 1, 3)
    S = H @ T.transpose(0, 1, 3, 2)  # (docs, nO, L', L')
    s = S[e_doc, :, e_row, e_col]  # (n_elems, nO)
    probs = _sigmoid(s, xp)
    mean = xp.clip(ops.reduce_mean(xp.ascontiguousarray(probs, dtype="float32"), sizes), EPS, 1 - EPS)
    logits = xp.log(mean) - xp.log1p(-mean)

    def backprop(dY: Tuple[Optional[Floats2d], Optional[Ragged]]) -> Tuple[Floats2d, Floats2d, BlockIndex]:
        d_logits, d_elements = dY
        ds = xp.zeros_like(s)
        if d_logits is not None:
            d_mean = d_logits / (mean * (1 - mean))
            ds = ds + xp.repeat(d_mean / sizes[:, None], sizes, axis=0) * probs * (1 - probs)
        if d_elements is not None:
            ds = ds + d_elements.data
        dS = xp.zeros_like(S)
        dS[e_doc, :, e_row, e_col] = ds  # each element belongs to one block
        dH = (dS @ T).transpose(0, 2, 1, 3).reshape(n_docs * width, nO * nK)
        dT = (dS.transpose(0, 1, 3, 2) @ H).transpose(0, 2, 1, 3).reshape(n_docs * width, nO * nK)
        model.inc_grad("W_h", Xh.reshape(-1, Xh.shape[2]).T @ dH)
        model.inc_grad("W_t", Xt.reshape(-1, Xt.shape[2]).T @ dT)
        flat = ops.asarray1i(tokens.reshape(-1))
        m = mask.reshape(-1, 1)
        dEb, dEp = ops.alloc2f(*Eb.shape), ops.alloc2f(*Ep.shape)
        ops.scatter_add(dEb, flat, xp.ascontiguousarray((dH @ W_h.T) * m, dtype="float32"))
        ops.scatter_add(dEp, flat, xp.ascontiguousarray((dT @ W_t.T) * m, dtype="float32"))
        return dEb, dEp, index

    return (logits, Ragged(s, sizes)), backprop
