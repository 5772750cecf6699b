"""spacy_mlre.MERE.v1: joint multilingual extraction (paper: mere-unified-to-language-specific).

encoder -> h (Eq. 2); relation classifier r_c = h_p W^r on the pooled encoder
output (Eq. 3); LA self-attention over h, with s docs of different languages
concatenated in training (Eq. 4); LS sub-modules mixed by a per-language
router (Eq. 5-8); four pointers over [h ; r_e] find head and tail start and
end for a relation (Eq. 9), trained with the gold relation; loss Eq. 12.

It follows the pipe's joint protocol (ml/inputs.py: JointBatch in,
JointOutput out): it decodes the relations of a doc (with the pipe's
decoding, ml/losses.py) and one head / tail pair per predicted relation
itself, restricted to the doc's entities when there are any. Its loss, Eq. 12,
is its `get_loss` hook (`mere_loss`).

Beyond the paper (its stated future work): several relations per doc, with a
sigmoid per relation (the pipe's multi_label) and one pointer decode each.
Two-stage training: stage 1 trains encoder, LA, classifier and pointers
(configs/mere_stage1_*.cfg); stage 2 (configs/mere_stage2_*.cfg) starts from
the stage-1 weights (callback spacy_mlre.load_mere_stage1.v1) and keeps the
encoder, LA and relation embeddings fixed while it trains LS, classifier and
pointers. Ablations: aggregator = null (mERE-LS-LA), switcher = null (mERE-LS),
switcher routing = "language" (mERE14), top_k, concat_sentences, module_layers.
"""
from typing import Callable, Dict, List, Optional, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, glorot_uniform_init
from thinc.types import Floats2d

from ..inputs import JointBatch, JointOutput
from ..losses import activate, decode_labels, label_loss
from ..mere.aggregator import language_aggregator
from ..mere.pointer import decode_spans, entity_pointers, pointer_loss, query_targets
from ..mere.switcher import language_switcher, router_probabilities, set_languages

MASKED_LOGIT = -30.0  # a relation absent from a language's training data: never predicted there


@registry.architectures("spacy_mlre.LanguageAggregator.v1")
def build_language_aggregator(width: int, concat_sentences: int = 2, residual: bool = True) -> Model:
    """LA (Eq. 4): self-attention; in training over `concat_sentences`
    concatenated docs of different languages (s in the paper, default 2);
    `residual` adds its input back (false: the bare Eq. 4)."""
    return language_aggregator(width, concat_sentences, residual)


@registry.architectures("spacy_mlre.LanguageSwitcher.v1")
def build_language_switcher(
    width: int,
    hidden_width: int = 128,
    module_layers: List[int] = [1, 1, 1, 2, 2, 2],
    top_k: int = 3,
    routing: str = "router",
) -> Model:
    """LS (Eq. 5-8): len(module_layers) sub-modules (paper: T = 6, three of 1
    layer and three of 2), hidden width b, top_k at prediction (paper: 3);
    routing "router" (Eq. 5) or "language" (mERE14, one sub-module per language)."""
    return language_switcher(width, hidden_width, module_layers, top_k, routing)


@registry.architectures("spacy_mlre.MERE.v1")
def build_mere(
    tok2vec: Model[List[Doc], List[Floats2d]],
    width: int,
    aggregator: Optional[Model] = None,
    switcher: Optional[Model] = None,
    stage: int = 1,
    entity_weight: float = 2.0,
    relation_weight: float = 1.0,
    mask_relations: bool = True,
    max_span_width: int = 0,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[JointBatch, JointOutput]:
    """The joint mERE model.

    tok2vec: the encoder (own Tok2Vec, a tok2vec or transformer listener).
    width: its token width d (LA, LS and the pointers are built for it).
    aggregator: a spacy_mlre.LanguageAggregator.v1 block, or null (no LA).
    switcher: a spacy_mlre.LanguageSwitcher.v1 block, or null (no LS).
    stage: 1 trains everything; 2 keeps the encoder, LA and relation
        embeddings fixed (load the stage-1 weights with the callback
        spacy_mlre.load_mere_stage1.v1).
    entity_weight, relation_weight: alpha and beta of Eq. 12 (paper: 2 and 1).
    mask_relations: a relation never seen with a language in training is not
        predicted for it (paper, section 4.2).
    max_span_width: longest entity span when decoding without entities (0: any).
    dropout: on the pooled vector and on the pointers' input.
    nO: number of relation outputs, normally inferred from the pipe's labels.
    """
    if stage not in (1, 2):
        raise ValueError(f"MERE.v1 stage must be 1 or 2, got {stage}.")
    classifier = Linear(nO=nO, nI=width, init_W=glorot_uniform_init)
    pointers = entity_pointers(width)
    pointers.attrs["freeze_relations"] = stage == 2
    drop_pooled, drop_tokens = Dropout(dropout), Dropout(dropout)
    layers = [tok2vec, classifier, pointers, drop_pooled, drop_tokens]
    refs = {"tok2vec": tok2vec, "classifier": classifier, "pointers": pointers,
            "drop_pooled": drop_pooled, "drop_tokens": drop_tokens}
    for name, block in (("aggregator", aggregator), ("switcher", switcher)):
        if block is not None:
            if block.get_dim("nI") != width:
                raise ValueError(f"MERE.v1 width is {width} but its {name} is built for {block.get_dim('nI')}.")
            layers.append(block)
            refs[name] = block
    return Model(
        "mere",
        _forward,
        init=_init,
        layers=layers,
        refs=refs,
        dims={"nO": nO, "nI": width},
        attrs={
            "protocol": "joint",
            "stage": stage,
            "entity_weight": entity_weight,
            "relation_weight": relation_weight,
            "get_loss": mere_loss,
            "mask_relations": mask_relations,
            "max_span_width": max_span_width,
            "langs": [],
            "label_mask": [],
        },
    )


def _init(model: Model, X: Optional[JointBatch] = None, Y: Optional[Floats2d] = None) -> None:
    tok2vec = model.get_ref("tok2vec")
    width = model.get_dim("nI")
    docs = X.docs if X is not None else None
    tok2vec.initialize(X=docs)
    if docs:
        found = next((v.shape[1] for v in tok2vec.predict(docs) if v.shape[0]), width)
        if found != width:
            raise ValueError(
                f"MERE.v1 has width = {width} but its encoder gives {found}-wide token "
                "vectors: set the model's width to the encoder's output width."
            )
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    n_out = model.get_dim("nO")
    n_labels = X.n_labels if X is not None else n_out
    classifier = model.get_ref("classifier")
    classifier.set_dim("nO", n_out, force=True)
    classifier.initialize()
    pointers = model.get_ref("pointers")
    pointers.set_dim("nR", n_labels, force=True)
    pointers.initialize()
    lang_labels = (X.lang_labels if X is not None else None) or {}
    langs = sorted(lang_labels)
    model.attrs["langs"] = langs
    # 1 where the output may be predicted for the language (no-relation always)
    model.attrs["label_mask"] = [
        [int(j >= n_labels or j in set(lang_labels[lang])) for j in range(n_out)] for lang in langs
    ]
    if model.has_ref("aggregator"):
        model.get_ref("aggregator").initialize()
    if model.has_ref("switcher"):
        switcher = model.get_ref("switcher")
        set_languages(switcher, langs)
        switcher.initialize()


def allowed_outputs(model: Model, langs: List[str], n_out: int) -> numpy.ndarray:
    """(n_docs, n_out) bool: outputs a doc's language may predict (all for an
    unseen language, or with mask_relations off)."""
    allowed = numpy.ones((len(langs), n_out), dtype=bool)
    if not model.attrs["mask_relations"] or not model.attrs["langs"]:
        return allowed
    table = {lang: numpy.asarray(row, dtype=bool) for lang, row in zip(model.attrs["langs"], model.attrs["label_mask"])}
    for i, lang in enumerate(langs):
        if lang in table:
            allowed[i] = table[lang]
    return allowed


def _forward(model: Model, batch: JointBatch, is_train: bool) -> Tuple[JointOutput, Callable]:
    ops = model.ops
    xp = ops.xp
    docs, langs = batch.docs, batch.langs
    frozen = model.attrs["stage"] == 2
    lengths = ops.asarray1i([len(doc) for doc in docs])
    tokvecs, bp_tokvecs = model.get_ref("tok2vec")(docs, is_train and not frozen)
    X = ops.flatten(tokvecs, pad=0) if len(docs) else ops.alloc2f(0, model.get_dim("nI"))
    X = ops.asarray2f(X)
    # relation classifier on the pooled encoder output (Eq. 3)
    pooled = ops.reduce_mean(X, lengths) if len(docs) else ops.alloc2f(0, X.shape[1])
    pooled_d, bp_drop_pooled = model.get_ref("drop_pooled")(pooled, is_train)
    logits, bp_classifier = model.get_ref("classifier")(pooled_d, is_train)
    allowed = xp.asarray(allowed_outputs(model, langs, logits.shape[1]))
    logits = xp.where(allowed, logits, MASKED_LOGIT).astype("float32")
    # LA (Eq. 4), LS (Eq. 5-8)
    H, bp_agg = X, None
    if model.has_ref("aggregator"):
        H, bp_agg = model.get_ref("aggregator")((X, lengths, langs), is_train)
    S, bp_switch = H, None
    if model.has_ref("switcher"):
        S, bp_switch = model.get_ref("switcher")((H, lengths, langs), is_train)
    S, bp_drop_tokens = model.get_ref("drop_tokens")(S, is_train)
    pointers = model.get_ref("pointers")

    if batch.gold is None:
        triples = _decode(model, batch, S, lengths, ops.to_numpy(logits))
        return JointOutput(relation_logits=logits, triples=triples), lambda d: batch

    queries, targets = query_targets(batch.gold)
    output = JointOutput(relation_logits=logits)
    bp_pointers = None
    if queries.shape[0]:
        (ptr_logits, mask), bp_pointers = pointers((S, lengths, queries), is_train)
        output.pointer_logits, output.pointer_mask, output.pointer_targets = ptr_logits, mask, xp.asarray(targets)

    def backprop(dY: JointOutput) -> JointBatch:
        """dY: gradients w.r.t. the relation logits and the pointer logits."""
        d_pooled = bp_drop_pooled(bp_classifier(ops.asarray2f(dY.relation_logits * allowed)))
        dS = ops.alloc2f(*S.shape)
        if bp_pointers is not None and dY.pointer_logits is not None:
            dS, _, _ = bp_pointers(dY.pointer_logits)
        dS = bp_drop_tokens(dS)
        dH = bp_switch(dS)[0] if bp_switch is not None else dS
        if frozen:
            return batch
        dX = bp_agg(dH)[0] if bp_agg is not None else dH
        dX = dX + ops.backprop_reduce_mean(d_pooled, lengths)
        bp_tokvecs(ops.unflatten(dX, lengths))
        return batch

    return output, backprop


def mere_loss(
    model: Model, batch: JointBatch, output: JointOutput, targets: numpy.ndarray, weights: numpy.ndarray, multi_label: bool
) -> Tuple[float, JointOutput]:
    """The `get_loss` hook, Eq. 12: beta * the relation loss over docs (the
    pipe's loss against the labels of each doc's gold triples) + alpha * the
    mean of the four pointers' cross-entropies over the gold triples."""
    ops = model.ops
    beta = float(model.attrs["relation_weight"])
    rel_loss, d_logits = label_loss(ops.to_numpy(output.relation_logits), targets, weights, multi_label)
    d_output = JointOutput(relation_logits=ops.asarray2f(beta * d_logits))
    span_loss = 0.0
    if output.pointer_logits is not None:
        span_loss, d_output.pointer_logits = pointer_loss(
            output.pointer_logits, output.pointer_mask, output.pointer_targets, model.attrs["entity_weight"] / 2
        )
    return beta * rel_loss + float(span_loss), d_output


def _decode(model: Model, batch: JointBatch, S: Floats2d, lengths, logits: numpy.ndarray) -> List[list]:
    """Relations above threshold (or the best one, single-label), then one
    pointer decode each, constrained to the doc's entities when given."""
    n_labels = batch.n_labels
    default = 0.5 if batch.multi_label else 0.0
    thresholds = batch.thresholds if batch.thresholds is not None else numpy.full((n_labels,), default)
    probs = activate(logits, batch.multi_label)
    doc_idx, rel_idx = decode_labels(probs, numpy.asarray(thresholds), batch.multi_label)
    lengths_np = model.ops.to_numpy(lengths)
    keep = lengths_np[doc_idx] > 0
    doc_idx, rel_idx = doc_idx[keep], rel_idx[keep]
    triples: List[list] = [[] for _ in batch.docs]
    if not len(doc_idx):
        return triples
    queries = numpy.stack([doc_idx, rel_idx], axis=1).astype("int64")
    (ptr_logits, _), _ = model.get_ref("pointers")((S, lengths, model.ops.asarray(queries)), False)
    ptr_logits = model.ops.to_numpy(ptr_logits)
    spans = batch.spans or [None] * len(batch.docs)
    for q, (d, r) in enumerate(queries.tolist()):
        found = decode_spans(ptr_logits[q, : lengths_np[d]], spans[d], model.attrs["max_span_width"])
        if found is not None:
            triples[d].append((*found, r, float(probs[d, r])))
    return triples


def mere_router_probabilities(model: Model) -> Optional[Dict[str, List[float]]]:
    """The switcher's selection probabilities per language (Fig. 8), if any."""
    for node in model.walk():
        if node.name == "language_switcher":
            return router_probabilities(node)
    return None


SHARED_REFS = ("tok2vec", "aggregator", "classifier", "pointers")


def copy_stage1_weights(source: Model, target: Model) -> None:
    """Copy encoder, LA, relation classifier and pointers (with E_r) from a
    trained stage-1 MERE model into a stage-2 one; LS starts fresh."""
    for name in SHARED_REFS:
        if source.has_ref(name) != target.has_ref(name):
            have = "has" if source.has_ref(name) else "has no"
            raise ValueError(
                f"The stage-1 model {have} a {name} but the stage-2 config "
                f"{'does not' if source.has_ref(name) else 'does'}: build both stages with the same blocks."
            )
        if source.has_ref(name):
            layer = target.get_ref(name)
            # weights from stage 1, settings (e.g. frozen relation embeddings) from stage 2
            settings = [dict(node.attrs) for node in layer.walk()]
            layer.from_bytes(source.get_ref(name).to_bytes())
            for node, attrs in zip(layer.walk(), settings):
                node.attrs.update(attrs)
    target.attrs["langs"] = list(source.attrs["langs"])
    target.attrs["label_mask"] = [list(row) for row in source.attrs["label_mask"]]


@registry.callbacks("spacy_mlre.load_mere_stage1.v1")
def make_load_stage1(path: Optional[str], component: str = "relation_extractor") -> Callable:
    """[initialize.after_init] callback of the stage-2 configs: load the
    stage-1 pipeline at `path` and copy its MERE weights (and labels, which
    must match) into the stage-2 component."""

    def load_stage1(nlp):
        import spacy

        if not path:
            raise ValueError("Stage 2 needs the stage-1 pipeline: pass --paths.stage1 DIR (a trained model-best).")
        stage1 = spacy.load(path)
        source, target = stage1.get_pipe(component), nlp.get_pipe(component)
        if tuple(source.labels) != tuple(target.labels):
            raise ValueError(
                f"The stage-1 pipeline at {path} has labels {list(source.labels)} but stage 2 "
                f"found {list(target.labels)}: train both stages on the same data."
            )
        copy_stage1_weights(source.model, target.model)
        target.cfg["thresholds"] = dict(source.cfg.get("thresholds") or {})
        return nlp

    return load_stage1
