"""spacy_mlre.EntityMarker.v1: entity-marker models (paper: cross-lingual-re-entity-type-markers).

Per candidate pair the input carries markers around head and tail: uniform
([E1] .. [/E1], [E2] .. [/E2]) or typed (the entity type, [PER] .. [PER]);
the marked sequences of all pairs go through the encoder as one batch; a
summary (the [CLS] state, the two opening markers, or a max over each
entity's markers and tokens) feeds one linear layer. The paper's baseline
"uniform markers + entity type embedding at the classifier" is
`markers = "uniform"` with `entity_type_width > 0`.

Typed markers: one per entity label in `entity_labels`, or, when that is
null, per label in the sample docs the pipe initializes the model with. An
entity label with no marker (unseen at initialize) gets the generic typed
marker [ENT].

Direction: pairs are ordered. Uniform markers name the head [E1] and the tail
[E2]; typed markers are the same for (A, B) and (B, A), so with typed markers
direction comes from the summary order (head part first), and the typed `cls`
variant cannot tell the two directions of a pair apart (as in the paper, whose
markers follow text order).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, HashEmbed, Linear, Model, glorot_uniform_init
from thinc.types import Floats2d

from ..inputs import Candidates
from ..markers.layout import MARKERS, POOLINGS, PairPlan, marker_rows, marker_vocab, summary_spans
from ..layers.spans import span_pooler

RelInputs = Tuple[List[Doc], Candidates]


@registry.architectures("spacy_mlre.EntityMarker.v1")
def build_entity_marker(
    encoder: Model,
    markers: str = "typed",
    pooling: str = "entity_start",
    entity_type_width: int = 0,
    entity_labels: Optional[List[str]] = None,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[RelInputs, Floats2d]:
    """Score every candidate pair for every label (logits).

    encoder: a marked-sequence encoder (spacy_mlre.MarkedTok2Vec.v1 or
        spacy_mlre.MarkedTransformer.v1), owned by this model.
    markers: "typed" (entity type markers, the paper's ETM) or "uniform" (UM).
    pooling: "cls" (sentence start, SS), "entity_start" (ES) or
        "entity_maxpool" (EMP).
    entity_type_width: >0 adds head and tail entity-type embeddings at the
        classifier (the paper's "UM-ES + Entity Type" baseline).
    entity_labels: entity labels that get typed markers (null: those of the
        initialization sample).
    dropout: on the summary, before the linear layer.
    nO: number of outputs, normally inferred from the pipe's labels.
    """
    if markers not in MARKERS:
        raise ValueError(f"Unknown markers {markers!r}: choose one of {', '.join(MARKERS)}.")
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
    pooler = span_pooler("max" if pooling == "entity_maxpool" else "first")
    drop = Dropout(dropout)
    output_layer = Linear(nO=nO, init_W=glorot_uniform_init)
    layers = [encoder, pooler, drop, output_layer]
    refs = {"encoder": encoder, "pooler": pooler, "dropout": drop, "output_layer": output_layer}
    if entity_type_width:
        type_embed = HashEmbed(nO=entity_type_width, nV=256, seed=17)
        layers.append(type_embed)
        refs["type_embed"] = type_embed
    return Model(
        "entity_marker",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nO": nO},
        attrs={
            "markers": markers,
            "pooling": pooling,
            "type_width": entity_type_width,
            "entity_labels": list(entity_labels) if entity_labels else None,
            "marker_vocab": None,
        },
    )


def _features_width(model: Model, width: int) -> int:
    parts = 1 if model.attrs["pooling"] == "cls" else 2
    return parts * width + 2 * model.attrs["type_width"]


def _entity_label_strings(docs: Sequence[Doc], cands: Candidates) -> List[str]:
    if not docs:
        return []
    strings = docs[0].vocab.strings
    uniq, inverse = numpy.unique(cands.labels, return_inverse=True)
    names = numpy.array([strings[int(h)] for h in uniq], dtype=object)
    return list(names[inverse.reshape(-1)]) if len(uniq) else []


def _init(model: Model, X: Optional[RelInputs] = None, Y: Optional[Floats2d] = None) -> None:
    labels = model.attrs["entity_labels"]
    if labels is None:
        labels = _entity_label_strings(X[0], X[1]) if X is not None else []
    vocab = marker_vocab(labels)
    model.attrs["marker_vocab"] = vocab
    encoder = model.get_ref("encoder")
    encoder.attrs["marker_vocab"] = vocab
    encoder.initialize(X=(X[0], make_plan(model, X[0], X[1])) if X is not None else None)
    if model.has_ref("type_embed"):
        model.get_ref("type_embed").initialize()
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    width = encoder.get_dim("nO")
    n_out = model.get_dim("nO")
    sample_X = model.ops.alloc2f(2, _features_width(model, width))
    model.get_ref("output_layer").initialize(X=sample_X, Y=model.ops.alloc2f(2, n_out) if n_out else None)


def make_plan(model: Model, docs: Sequence[Doc], cands: Candidates) -> PairPlan:
    """The word-level plan of every pair's marked sequence (no loop per pair)."""
    lengths = numpy.array([len(doc) for doc in docs], dtype="int64")
    spans = cands.global_spans(lengths)
    pairs = cands.pairs.astype("int64")
    doc_starts = (numpy.cumsum(lengths) - lengths)[cands.pair_doc]
    doc_bounds = numpy.stack([doc_starts, doc_starts + lengths[cands.pair_doc]], axis=1)
    rows = marker_rows(model.attrs["markers"], model.attrs["marker_vocab"], _entity_label_strings(docs, cands), pairs)
    return PairPlan(
        head=spans[pairs[:, 0]].reshape((-1, 2)),
        tail=spans[pairs[:, 1]].reshape((-1, 2)),
        doc_bounds=doc_bounds.reshape((-1, 2)),
        marker_rows=rows,
    )


def _forward(model: Model, inputs: RelInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    docs, cands = inputs
    ops = model.ops
    encoder, pooler = model.get_ref("encoder"), model.get_ref("pooler")
    drop, output_layer = model.get_ref("dropout"), model.get_ref("output_layer")
    n = cands.n_pairs
    (H, layout), bp_encoder = encoder((docs, make_plan(model, docs, cands)), is_train)
    width = H.shape[1]
    parts, bp_parts = pooler((H, ops.asarray(summary_spans(layout, model.attrs["pooling"]), dtype="int64")), is_train)
    n_parts = 1 if model.attrs["pooling"] == "cls" else 2
    features = [parts[i * n : (i + 1) * n] for i in range(n_parts)]
    heads, tails = ops.asarray1i(cands.pairs[:, 0]), ops.asarray1i(cands.pairs[:, 1])
    if model.has_ref("type_embed"):
        types, bp_types = model.get_ref("type_embed")(ops.asarray(cands.labels, dtype="uint64"), is_train)
        features.extend([types[heads], types[tails]])
    summary = ops.xp.concatenate(features, axis=1) if n else ops.alloc2f(0, _features_width(model, width))
    dropped, bp_drop = drop(summary, is_train)
    scores, bp_scores = output_layer(dropped, is_train)

    def backprop(d_scores: Floats2d) -> RelInputs:
        d_summary = bp_drop(bp_scores(d_scores))
        d_parts = ops.xp.concatenate([d_summary[:, i * width : (i + 1) * width] for i in range(n_parts)])
        if model.has_ref("type_embed"):
            tw = model.attrs["type_width"]
            col = n_parts * width
            d_types = ops.alloc2f(*types.shape)
            ops.scatter_add(d_types, heads, ops.xp.ascontiguousarray(d_summary[:, col : col + tw]))
            ops.scatter_add(d_types, tails, ops.xp.ascontiguousarray(d_summary[:, col + tw :]))
            bp_types(d_types)
        dH, _ = bp_parts(ops.xp.ascontiguousarray(d_parts))
        bp_encoder(dH)
        return inputs

    return scores, backprop


@registry.architectures("spacy_mlre.MarkedTok2Vec.v1")
def build_marked_tok2vec(
    embed: Model[List[Doc], List[Floats2d]],
    encode: Model[List[Floats2d], List[Floats2d]],
    max_length: Optional[int] = 128,
) -> Model:
    """CPU encoder of marked sequences: word hash embeddings (embed), a learned
    vector per marker, and a contextual encoder (encode) over each sequence."""
    from ..markers.encoders import marked_tok2vec

    return marked_tok2vec(embed, encode, max_length)


@registry.architectures("spacy_mlre.MarkedTransformer.v1")
def build_marked_transformer(
    name: str,
    max_length: int = 512,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
) -> Model:
    """Hugging Face encoder of marked word-piece sequences (name: hub id or local dir);
    marker tokens are added to its tokenizer and embeddings at initialize."""
    from ..markers.encoders import marked_transformer

    return marked_transformer(name, max_length, tokenizer_config, transformer_config, mixed_precision, grad_scaler_config)
