"""spacy_mlre.KernelMatrix.v1: the kernel-matrix head (paper: kernel-matrix-downstream-re).

encoder -> E_w; E_b = E_w + E_a (doc vector, Eq. 2); E_p = Transformer(E_w) (Eq. 1);
per relation S_i = (E_b W_hi)(E_p W_ti)^T (Eq. 3-4), sigmoid (Eq. 5); a pair's
score is the mean probability over its head x tail block; the loss is the
block-averaged BCE of Eq. 8-10, the model's own loss (`kernel_loss`, the
`get_loss` hook the pipe calls). One encoder pass and one batched kernel product
score every pair of every doc for every relation, so the cost per extra pair
is one block gather, which is what makes it fast on docs with many entities.
"""
from typing import Callable, List, Optional, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Model
from thinc.types import Floats2d, Ragged

from ..inputs import PairInputs
from ..layers.attention import self_attention
from ..layers.doc_vector import add_doc_vector, add_given_doc_vector
from ..layers.kernel import BlockIndex, KernelOutput, block_bce, build_block_index, kernel_scorer
from ..losses import label_loss


@registry.architectures("spacy_mlre.KernelMatrix.v1")
def build_kernel_matrix(
    tok2vec: Model[List[Doc], List[Floats2d]],
    width: int,
    projection_width: int = 64,
    doc_vector: Optional[str] = "mean",
    tail_attention: bool = True,
    attention_heads: int = 4,
    attention_ffn_width: int = 0,
    dropout: float = 0.1,
    block_loss: bool = True,
    nO: Optional[int] = None,
) -> Model[PairInputs, KernelOutput]:
    """Score every candidate pair for every label (logits of the block-mean
    probability), with the block elements' scores for the loss.

    tok2vec: the encoder (own Tok2Vec, a tok2vec or transformer listener): E_w.
    width: the encoder's token width h (the E_p layer is built for it).
    projection_width: columns of W_hi and W_ti (the paper uses h; narrower keeps
        hundreds of relations affordable).
    doc_vector: E_a pooled from the doc's tokens ("mean" or "max"), the
        transformer's CLS embedding ("cls", as in the paper: needs an encoder
        that gives it, spacy_mlre.TransformerHiddenListener.v1), or null to drop
        it (ablation: E_b = E_w).
    tail_attention: E_p from one extra transformer-encoder layer over E_w with
        `attention_heads` heads and an FFN of `attention_ffn_width` (0: 4 * h);
        false uses E_p = E_w (ablation).
    dropout: on E_w, and inside the attention layer.
    block_loss: the paper's loss, BCE per block element averaged over the
        block (Eq. 8-10); false trains on the BCE of the block-mean
        probability instead (the pipe's pair loss; ablation).
    nO: number of outputs, normally inferred from the pipe's labels.
    """
    kernel = kernel_scorer(projection_width, nO=nO, nI=width)
    drop = Dropout(dropout)
    layers = [tok2vec, drop, kernel]
    refs = {"tok2vec": tok2vec, "dropout": drop, "kernel": kernel}
    if doc_vector == "cls":
        if not tok2vec.attrs.get("gives_cls"):
            raise ValueError(
                "KernelMatrix.v1 has doc_vector = 'cls', but its encoder "
                f"({tok2vec.name}) gives only token vectors, no CLS embedding: use "
                "spacy_mlre.TransformerHiddenListener.v1 as the tok2vec, or doc_vector = "
                "'mean' / 'max' to pool E_a from the tokens."
            )
        tok2vec.get_ref("trf_hidden").attrs["cls_row"] = True
        refs["doc_vector"] = add_given_doc_vector()
        layers.append(refs["doc_vector"])
    elif doc_vector:
        pool = add_doc_vector(doc_vector)
        layers.append(pool)
        refs["doc_vector"] = pool
    if tail_attention:
        attention = self_attention(width, attention_heads, attention_ffn_width, dropout)
        layers.append(attention)
        refs["attention"] = attention
    return Model(
        "kernel_matrix",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nO": nO},
        attrs={"doc_vector": doc_vector, "block_loss": block_loss, "get_loss": kernel_loss},
    )


def _init(model: Model, X: Optional[PairInputs] = None, Y: Optional[Floats2d] = None) -> None:
    tok2vec, kernel = model.get_ref("tok2vec"), model.get_ref("kernel")
    docs = X[0] if X is not None else None
    tok2vec.initialize(X=docs)
    width = kernel.get_dim("nI")
    if docs:
        found = next((v.shape[1] for v in tok2vec.predict(docs) if v.shape[0]), width)
        if found != width:
            raise ValueError(
                f"KernelMatrix.v1 has width = {width} but its encoder gives {found}-wide "
                "token vectors: set the model's width to the encoder's hidden size."
            )
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    kernel.set_dim("nO", model.get_dim("nO"), force=True)
    kernel.initialize()
    if model.has_ref("attention"):
        sample = [model.ops.alloc2f(2, width)]
        model.get_ref("attention").initialize(X=sample, Y=sample)


def _forward(model: Model, inputs: PairInputs, is_train: bool) -> Tuple[KernelOutput, Callable]:
    docs, cands = inputs
    ops = model.ops
    lengths = ops.asarray1i([len(doc) for doc in docs])
    tokvecs, bp_tokvecs = model.get_ref("tok2vec")(docs, is_train)
    given = model.attrs.get("doc_vector") == "cls"  # each doc's E_a comes as its row 0
    rows = ops.asarray1i([len(doc) + 1 for doc in docs]) if given else lengths
    X, bp_drop = model.get_ref("dropout")(ops.flatten(tokvecs), is_train)
    if given:
        (Ew, Ea), bp_split = _split_first_rows(ops, X, rows)
        Eb, bp_Eb = model.get_ref("doc_vector")((Ew, Ea, lengths), is_train)
    elif model.has_ref("doc_vector"):
        Ew = X
        Eb, bp_Eb = model.get_ref("doc_vector")((Ew, lengths), is_train)
    else:
        Ew = X
        Eb, bp_Eb = Ew, None
    index = build_block_index(cands, [len(doc) for doc in docs])
    if model.has_ref("attention"):
        Ep, bp_Ep = _tail_attention(model.get_ref("attention"), Ew, lengths, index, is_train)
    else:
        Ep, bp_Ep = Ew, None
    output, bp_kernel = model.get_ref("kernel")((Eb, Ep, index), is_train)

    def backprop(dY: Tuple[Optional[Floats2d], Optional[Ragged]]) -> PairInputs:
        """dY: gradients w.r.t. the pair logits and the element scores (either may be None)."""
        dEb, dEp, _ = bp_kernel(dY)
        dEa = None
        if given:
            dEw, dEa, _ = bp_Eb(dEb)
        else:
            dEw = bp_Eb(dEb)[0] if bp_Eb is not None else dEb
        if bp_Ep is not None:
            dEw = dEw + bp_Ep(dEp)
        else:
            dEw = dEw + dEp
        dX = bp_split(dEw, dEa) if given else dEw
        bp_tokvecs(ops.unflatten(bp_drop(dX), rows))
        return inputs

    return output, backprop


def kernel_loss(
    model: Model, X: PairInputs, Y: KernelOutput, targets: numpy.ndarray, weights: numpy.ndarray, multi_label: bool
) -> Tuple[float, Tuple[Optional[Floats2d], Optional[Ragged]]]:
    """The `get_loss` hook: Eq. 8-10, the BCE of every block element against
    its pair's labels, averaged over the block, weighted per pair (the pipe's
    negative weighting and sampling), summed over relations; the gradient
    goes to the element scores. With block_loss = false, the pipe's loss on
    the pair logits."""
    if not multi_label:
        raise ValueError(
            "KernelMatrix.v1 scores every relation with its own sigmoid (Eq. 5): set the "
            "relation_extractor's multi_label = true."
        )
    ops = model.ops
    logits, elements = Y
    if not model.attrs["block_loss"]:
        loss, d_logits = label_loss(ops.to_numpy(logits), targets, weights, multi_label)
        return loss, (ops.asarray2f(d_logits), None)
    xp = ops.xp
    loss, d_s = block_bce(elements.data, elements.lengths, xp.asarray(targets), xp.asarray(weights), xp=xp)
    return loss, (None, Ragged(ops.asarray2f(d_s), elements.lengths))


def _tail_attention(attention: Model, Ew: Floats2d, lengths, index: BlockIndex, is_train: bool) -> Tuple[Floats2d, Callable]:
    """E_p at the batch's entity tokens (the only rows the kernel reads), as a
    flat (n_tokens, width) array with zeros elsewhere."""
    ops = attention.ops
    xp = ops.xp
    lengths_np = ops.to_numpy(lengths)
    starts = numpy.cumsum(lengths_np) - lengths_np
    rows = [numpy.unique(index.tokens[d][index.mask[d] > 0]) for d in range(len(lengths_np))]
    queries = [ops.asarray1i(r - starts[d]) for d, r in enumerate(rows)]
    flat_rows = xp.asarray(numpy.concatenate(rows) if rows else numpy.zeros((0,), dtype="int64"))
    Ys, bp_attention = attention((ops.unflatten(Ew, lengths), queries), is_train)
    Ep = ops.alloc2f(*Ew.shape)
    if flat_rows.shape[0]:
        Ep[flat_rows] = ops.flatten(Ys)

    def backprop(dEp: Floats2d) -> Floats2d:
        dXs, _ = bp_attention(ops.unflatten(dEp[flat_rows], ops.asarray1i([len(r) for r in rows])))
        return ops.flatten(dXs)

    return Ep, backprop


def _split_first_rows(ops, X: Floats2d, rows) -> Tuple[Tuple[Floats2d, Floats2d], Callable]:
    """Flat rows of docs whose row 0 is the doc vector -> (token rows, doc rows)."""
    xp = ops.xp
    starts = xp.cumsum(rows) - rows
    first = xp.zeros((X.shape[0],), dtype=bool)
    first[starts] = True
    Ew, Ea = X[~first], X[starts]

    def backprop(dEw: Floats2d, dEa: Floats2d) -> Floats2d:
        dX = ops.alloc2f(*X.shape)
        dX[~first] = dEw
        dX[starts] = dEa
        return dX

    return (Ew, Ea), backprop
