"""spacy_mlre.PairClassifier.v2: the pooled head/tail baseline.

chain(pair features, scorer), as spaCy's spancat is chain(..., extract_spans,
reducer, scorer): the encoder, the reducer that pools an entity's token
vectors and the scorer are config blocks.

encoder -> pooled head span, pooled tail span (+ entity-type embeddings)
(+ mean of the tokens between them, + head * tail) -> hidden Maxout layer ->
one logit per label. Each entity is pooled, typed and projected by the hidden
layer once per batch (layers/pair_maxout.py), so all pairs of a batch share
one encoder pass and the per-pair work is a gather, the pair features'
projection and the output layer.

spacy_mlre.PairClassifier.v1 (pooling as a string, one hand-wired model) stays
so that pipelines saved with it load; new configs use v2.
"""
from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, HashEmbed, LayerNorm, Linear, Model, chain, glorot_uniform_init
from thinc.types import Floats2d, Ragged

from ..inputs import PairInputs
from ..layers.pair_features import PairFeatures, pair_features
from ..layers.pair_maxout import pair_maxout
from ..layers.spans import mean_between, span_pooler

RelInputs = PairInputs


@registry.architectures("spacy_mlre.PairClassifier.v2")
def build_pair_classifier_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    reducer: Model[Ragged, Floats2d],
    scorer: Model[PairFeatures, Floats2d],
    entity_type_width: int = 16,
    context: bool = True,
    product: bool = False,
) -> Model[PairInputs, Floats2d]:
    """Score every candidate pair for every label (logits). Superseded by v2.

    tok2vec: the encoder (own Tok2Vec, a tok2vec or transformer listener, a
        frozen encoder).
    reducer: pools an entity's token vectors into one, e.g. thinc's
        reduce_mean.v1, reduce_max.v1, reduce_first.v1, or spaCy's
        spacy.mean_max_reducer.v1.
    scorer: reads (entity vectors, pair rows, pair features), e.g.
        spacy_mlre.PairScorer.v1; its output width is the pipe's outputs.
    entity_type_width: width of the entity-label embedding of head and tail
        (0 switches it off; labels are hashed, so unseen types need no table).
    context: a pair feature, the mean of the tokens between the two entities.
    product: a pair feature, the elementwise product of the two pooled entities.
    """
    return chain(pair_features(tok2vec, reducer, entity_type_width, context, product), scorer)


@registry.architectures("spacy_mlre.PairScorer.v1")
def build_pair_scorer(hidden_width: int = 128, dropout: float = 0.1, nO: Optional[int] = None) -> Model[PairFeatures, Floats2d]:
    """A hidden Maxout layer over [head; tail; pair features] (computed per
    entity, layers/pair_maxout.py), layer norm, dropout, then one logit per output."""
    return chain(
        pair_maxout(nO=hidden_width, nP=3), LayerNorm(nI=hidden_width), Dropout(dropout),
        Linear(nO=nO, init_W=glorot_uniform_init),
    )


@registry.architectures("spacy_mlre.PairClassifier.v1")
def build_pair_classifier(
    tok2vec: Model[List[Doc], List[Floats2d]],
    pooling: str = "mean",
    entity_type_width: int = 16,
    context: bool = True,
    hidden_width: int = 128,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[RelInputs, Floats2d]:
    """Score every candidate pair for every label (logits).

    tok2vec: the encoder (own Tok2Vec, a tok2vec or transformer listener).
    pooling: how an entity's token vectors become one vector: mean, max or first.
    entity_type_width: width of the entity-label embedding of head and tail
        (0 switches it off; labels are hashed, so unseen types need no table).
    context: add the mean of the tokens between the two entities.
    hidden_width, dropout: the hidden Maxout layer before the output.
    nO: number of outputs, normally inferred from the pipe's labels.
    """
    pooler = span_pooler(pooling)
    layers = [tok2vec, pooler]
    refs = {"tok2vec": tok2vec, "pooler": pooler}
    if entity_type_width:
        type_embed = HashEmbed(nO=entity_type_width, nV=256, seed=17)
        layers.append(type_embed)
        refs["type_embed"] = type_embed
    if context:
        between = mean_between()
        layers.append(between)
        refs["between"] = between
    output_layer = Linear(nO=nO, init_W=glorot_uniform_init)
    classifier = chain(pair_maxout(nO=hidden_width, nP=3), LayerNorm(nI=hidden_width), Dropout(dropout), output_layer)
    layers.append(classifier)
    refs.update({"classifier": classifier, "output_layer": output_layer})
    return Model(
        "pair_classifier",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nO": nO},
        attrs={"type_width": entity_type_width, "context": context},
    )


def _widths(model: Model, token_width: int) -> Tuple[int, int]:
    """Widths of an entity's features (pooled + type) and of a pair's own (context)."""
    return token_width + model.attrs["type_width"], token_width if model.attrs["context"] else 0


def _init(model: Model, X: Optional[RelInputs] = None, Y: Optional[Floats2d] = None) -> None:
    tok2vec = model.get_ref("tok2vec")
    docs = X[0] if X is not None else None
    tok2vec.initialize(X=docs)
    if tok2vec.has_dim("nO") and tok2vec.get_dim("nO"):
        token_width = tok2vec.get_dim("nO")
    elif docs:
        token_width = tok2vec.predict(docs)[0].shape[1]
    else:
        raise ValueError("PairClassifier needs sample docs to infer the encoder's width.")
    if model.has_ref("type_embed"):
        model.get_ref("type_embed").initialize()
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    classifier = model.get_ref("classifier")
    n_out = model.get_dim("nO")
    ent_width, pair_width = _widths(model, token_width)
    sample_X = (model.ops.alloc2f(2, ent_width), model.ops.asarray2i([[0, 1]]), model.ops.alloc2f(1, pair_width))
    sample_Y = model.ops.alloc2f(1, n_out) if n_out else None
    classifier.initialize(X=sample_X, Y=sample_Y)


def _forward(model: Model, inputs: RelInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    docs, cands = inputs
    ops = model.ops
    tok2vec, pooler = model.get_ref("tok2vec"), model.get_ref("pooler")
    classifier = model.get_ref("classifier")

    tokvecs, bp_tokvecs = tok2vec(docs, is_train)
    lengths = [len(doc) for doc in docs]
    X = ops.flatten(tokvecs)
    token_width = X.shape[1]
    ent_spans = ops.asarray(cands.global_spans(lengths), dtype="int64")
    ents, bp_ents = pooler((X, ent_spans), is_train)
    ent_parts = [ents]
    if model.has_ref("type_embed"):
        types, bp_types = model.get_ref("type_embed")(ops.asarray(cands.labels, dtype="uint64"), is_train)
        ent_parts.append(types)
    pairs = ops.asarray2i(cands.pairs[:, :2])
    if model.has_ref("between"):
        # tokens after the earlier entity ends and before the later one starts
        h_spans, t_spans = ent_spans[pairs[:, 0]], ent_spans[pairs[:, 1]]
        between_spans = ops.xp.stack(
            [ops.xp.minimum(h_spans[:, 1], t_spans[:, 1]), ops.xp.maximum(h_spans[:, 0], t_spans[:, 0])], axis=1
        )
        pair_feats, bp_ctx = model.get_ref("between")((X, between_spans), is_train)
    else:
        pair_feats = ops.alloc2f(pairs.shape[0], 0)
    ent_feats = ops.xp.concatenate(ent_parts, axis=1) if len(ent_parts) > 1 else ents
    scores, bp_scores = classifier((ent_feats, pairs, pair_feats), is_train)

    def backprop(d_scores: Floats2d) -> RelInputs:
        d_ent_feats, _, d_pair_feats = bp_scores(d_scores)
        dX, _ = bp_ents(ops.xp.ascontiguousarray(d_ent_feats[:, :token_width]))
        if model.has_ref("type_embed"):
            bp_types(ops.xp.ascontiguousarray(d_ent_feats[:, token_width:]))
        if model.has_ref("between"):
            d_ctx_X, _ = bp_ctx(d_pair_feats)
            dX = dX + d_ctx_X
        bp_tokvecs(ops.unflatten(dX, ops.asarray1i(lengths)))
        return inputs

    return scores, backprop
