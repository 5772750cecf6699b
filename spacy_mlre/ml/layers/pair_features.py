"""The features a pair scorer reads: one vector per entity, and per pair its
own features, computed from one encoder pass over the batch.

Output: (entity vectors (n_ents, width [+ type width]), pair rows (n_pairs, 2)
into them, pair features (n_pairs, k)), the input of `pair_maxout`, so the
scorer projects each entity once instead of once per pair. Pair features are
the mean of the tokens between the two entities (`context`) and the
elementwise product of the two pooled entities (`product`), either or both or
none (k = 0).
"""
from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from thinc.api import HashEmbed, Model, chain
from thinc.types import Floats2d, Ints2d, Ragged

from ..inputs import PairInputs
from .spans import extract_spans, mean_between

PairFeatures = Tuple[Floats2d, Ints2d, Floats2d]


def pair_features(
    tok2vec: Model[List[Doc], List[Floats2d]],
    reducer: Model[Ragged, Floats2d],
    entity_type_width: int = 16,
    context: bool = True,
    product: bool = False,
) -> Model[PairInputs, PairFeatures]:
    """Entity vectors: the reducer over each entity's token vectors (`extract_spans`,
    as spancat does), plus a hashed entity-label embedding of
    `entity_type_width` (0: none)."""
    pool = chain(extract_spans(), reducer)
    layers = [tok2vec, pool]
    refs = {"tok2vec": tok2vec, "pool": pool}
    if entity_type_width:
        refs["type_embed"] = HashEmbed(nO=entity_type_width, nV=256, seed=17)
        layers.append(refs["type_embed"])
    if context:
        refs["between"] = mean_between()
        layers.append(refs["between"])
    return Model(
        "pair_features",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nT": None},
        attrs={"product": product},
    )


def _init(model: Model, X: Optional[PairInputs] = None, Y=None) -> None:
    docs = X[0] if X is not None else None
    tok2vec = model.get_ref("tok2vec")
    tok2vec.initialize(X=docs)
    # the token width, so that a batch without tokens still has the right shapes
    if tok2vec.has_dim("nO") and tok2vec.get_dim("nO"):
        model.set_dim("nT", tok2vec.get_dim("nO"))
    elif docs:
        model.set_dim("nT", next(v.shape[1] for v in tok2vec.predict(docs)))
    else:
        raise ValueError("PairClassifier needs sample docs to infer its encoder's width.")
    if model.has_ref("type_embed"):
        model.get_ref("type_embed").initialize()
    ops = model.ops
    if X is not None and X[1].spans.shape[0]:
        sample = _span_inputs(model, tok2vec.predict(docs), X)
    else:  # one entity of one token: enough for the reducer to size itself
        sample = (Ragged(ops.alloc2f(1, model.get_dim("nT")), ops.asarray1i([1])),
                  Ragged(ops.asarray2i([[0, 1]]), ops.asarray1i([1])))
    model.get_ref("pool").initialize(X=sample)


def _empty(model: Model) -> PairFeatures:
    """The features of a batch without docs, with their widths (for initialize)."""
    pooled = _pooled_width(model)
    ent_width = pooled + (model.get_ref("type_embed").get_dim("nO") if model.has_ref("type_embed") else 0)
    pair_width = model.get_dim("nT") * int(model.has_ref("between")) + pooled * int(model.attrs["product"])
    ops = model.ops
    return ops.alloc2f(0, ent_width), ops.alloc2i(0, 2), ops.alloc2f(0, pair_width)


def _pooled_width(model: Model) -> int:
    """An entity vector's width: the reducer's output, by default the token width."""
    reducer = model.get_ref("pool").layers[-1]
    if reducer.has_dim("nO") and reducer.get_dim("nO"):
        return reducer.get_dim("nO")
    return model.get_dim("nT")


def _span_inputs(model: Model, tokvecs: List[Floats2d], X: PairInputs) -> Tuple[Ragged, Ragged]:
    """Token vectors per doc and entity spans per doc, as extract_spans takes them."""
    ops = model.ops
    docs, cands = X
    lengths = ops.asarray1i([len(doc) for doc in docs])
    spans = Ragged(ops.asarray2i(cands.spans), ops.asarray1i(cands.ent_lengths))
    flat = ops.flatten(tokvecs) if sum(len(doc) for doc in docs) else ops.alloc2f(0, model.get_dim("nT"))
    return Ragged(flat, lengths), spans


def _forward(model: Model, X: PairInputs, is_train: bool) -> Tuple[PairFeatures, Callable]:
    docs, cands = X
    ops, xp = model.ops, model.ops.xp
    if not docs:
        return _empty(model), lambda dY: X
    tokvecs, bp_tokvecs = model.get_ref("tok2vec")(docs, is_train)
    tokens, spans = _span_inputs(model, tokvecs, X)
    ents, bp_pool = model.get_ref("pool")((tokens, spans), is_train)
    if ents.shape[0] == 0:  # thinc's reducers return (0, 0) for no spans
        ents = ops.alloc2f(0, _pooled_width(model))
    width, tok_width = ents.shape[1], tokens.data.shape[1]
    ent_parts = [ents]
    if model.has_ref("type_embed"):
        types, bp_types = model.get_ref("type_embed")(ops.asarray(cands.labels, dtype="uint64"), is_train)
        ent_parts.append(types)
    pairs = ops.asarray2i(cands.pairs[:, :2])
    pair_parts = []
    if model.has_ref("between"):
        # tokens after the earlier entity ends and before the later one starts
        ent_spans = ops.asarray(cands.global_spans([len(doc) for doc in docs]), dtype="int64")
        h_spans, t_spans = ent_spans[pairs[:, 0]], ent_spans[pairs[:, 1]]
        between_spans = xp.stack([xp.minimum(h_spans[:, 1], t_spans[:, 1]), xp.maximum(h_spans[:, 0], t_spans[:, 0])], axis=1)
        between, bp_between = model.get_ref("between")((tokens.data, between_spans), is_train)
        pair_parts.append(between)
    if model.attrs["product"]:
        pair_parts.append(ents[pairs[:, 0]] * ents[pairs[:, 1]])
    ent_feats = xp.concatenate(ent_parts, axis=1) if len(ent_parts) > 1 else ents
    pair_feats = xp.concatenate(pair_parts, axis=1) if pair_parts else ops.alloc2f(pairs.shape[0], 0)

    def backprop(dY: PairFeatures) -> PairInputs:
        d_ent_feats, _, d_pair_feats = dY
        d_ents = xp.ascontiguousarray(d_ent_feats[:, :width])
        if model.has_ref("type_embed"):
            bp_types(xp.ascontiguousarray(d_ent_feats[:, width:]))
        d_tokens = ops.alloc2f(*tokens.data.shape)
        col = 0
        if model.has_ref("between"):
            d_tokens += bp_between(xp.ascontiguousarray(d_pair_feats[:, :tok_width]))[0]
            col = tok_width
        if model.attrs["product"]:
            d_prod = d_pair_feats[:, col : col + width]
            d_ents = d_ents.copy()
            ops.scatter_add(d_ents, pairs[:, 0], xp.ascontiguousarray(d_prod * ents[pairs[:, 1]]))
            ops.scatter_add(d_ents, pairs[:, 1], xp.ascontiguousarray(d_prod * ents[pairs[:, 0]]))
        d_token_rag, _ = bp_pool(d_ents)
        d_tokens += d_token_rag.data
        bp_tokvecs(ops.unflatten(d_tokens, tokens.lengths))
        return X

    return (ent_feats, pairs, pair_feats), backprop
