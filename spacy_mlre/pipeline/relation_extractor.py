"""The `relation_extractor` pipe: entity pairs in, `doc._.relations` out."""
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d

from ..language import get_lang
from ..relations import RelationKey, _describe_doc, get_relation_rows, relation_keys, set_relation_rows
from ..scorer import score_relations
from .candidates import Candidates, build_candidates, get_entities
from .joint import JointBatch, JointOutput

default_model_config = """
[model]
@architectures = "spacy_mlre.PairClassifier.v1"
pooling = "mean"
entity_type_width = 16
context = true
hidden_width = 128
dropout = 0.1

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
rows = [5000, 1000, 2500, 1000]
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
include_static_vectors = false

[model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = ${model.tok2vec.embed.width}
window_size = 1
maxout_pieces = 3
depth = 4
"""
DEFAULT_REL_MODEL = Config().from_str(default_model_config)["model"]


@Language.factory(
    "relation_extractor",
    assigns=["doc._.relations"],
    requires=["doc.ents"],
    default_config={
        "model": DEFAULT_REL_MODEL,
        "spans_key": None,
        "max_distance": 100,
        "same_sentence": False,
        "type_constraints": False,
        "multi_label": True,
        "threshold": 0.5,
        "negative_weight": 1.0,
        "negative_sampling": 1.0,
        "use_gold_ents": False,
        "scorer": {"@scorers": "spacy_mlre.relation_scorer.v1"},
    },
    default_score_weights={
        "rel_micro_f": 1.0,
        "rel_micro_p": 0.0,
        "rel_micro_r": 0.0,
        "rel_macro_f": 0.0,
        "rel_f_per_label": None,
        "rel_f_per_lang": None,
    },
)
def make_relation_extractor(
    nlp: Language,
    name: str,
    model: Model,
    spans_key: Optional[str],
    max_distance: Optional[int],
    same_sentence: bool,
    type_constraints: bool,
    multi_label: bool,
    threshold: float,
    negative_weight: float,
    negative_sampling: float,
    use_gold_ents: bool,
    scorer: Optional[Callable],
) -> "RelationExtractor":
    return RelationExtractor(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        max_distance=max_distance,
        same_sentence=same_sentence,
        type_constraints=type_constraints,
        multi_label=multi_label,
        threshold=threshold,
        negative_weight=negative_weight,
        negative_sampling=negative_sampling,
        use_gold_ents=use_gold_ents,
        scorer=scorer,
    )


class RelationExtractor(TrainablePipe):
    """Predict directed, labelled relations between the entities of a doc.

    Entities come from `doc.ents` or the span group `spans_key`. Candidates
    are ordered entity pairs within `max_distance` tokens (optionally in the
    same sentence, optionally restricted to entity-type pairs seen with a
    relation in training). The model returns one logit per pair and output;
    `multi_label` decodes with a sigmoid and per-label thresholds,
    single-label with a softmax over the labels plus a no-relation output.
    A joint model (`model.attrs["protocol"] == "joint"`, e.g. MERE) finds the
    head and tail spans itself and uses the entities only to constrain its
    decoding (pipeline/joint.py).
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "relation_extractor",
        *,
        spans_key: Optional[str] = None,
        max_distance: Optional[int] = 100,
        same_sentence: bool = False,
        type_constraints: bool = False,
        multi_label: bool = True,
        threshold: float = 0.5,
        negative_weight: float = 1.0,
        negative_sampling: float = 1.0,
        use_gold_ents: bool = False,
        scorer: Optional[Callable] = score_relations,
    ) -> None:
        if not 0.0 < negative_sampling <= 1.0:
            raise ValueError(f"negative_sampling is the share of no-relation pairs kept per update: it must be in (0, 1], got {negative_sampling}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "spans_key": spans_key,
            "max_distance": max_distance,
            "same_sentence": same_sentence,
            "type_constraints": type_constraints,
            "allowed_types": None,
            "multi_label": multi_label,
            "threshold": threshold,
            "thresholds": {},
            "negative_weight": negative_weight,
            "negative_sampling": negative_sampling,
            "use_gold_ents": use_gold_ents,
        }

    # Labels ---------------------------------------------------------------

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def _n_outputs(self) -> int:
        """Outputs of the model: one per label, plus no-relation when single-label."""
        return len(self.labels) + (0 if self.cfg["multi_label"] else 1)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"A relation label must be a non-empty string, got {label!r}.")
        if label in self.labels:
            return 0
        if self.model.has_dim("nO") and self.model.get_dim("nO") == self._n_outputs:
            raise ValueError(
                f"Cannot add label {label!r} to the initialized '{self.name}' component: "
                "its output layer is sized. Add labels before nlp.initialize()."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def _thresholds(self) -> numpy.ndarray:
        """Per-output decision thresholds (tuned per label, else the global one)."""
        per_label = self.cfg.get("thresholds") or {}
        values = [float(per_label.get(label, self.cfg["threshold"])) for label in self.labels]
        return numpy.array(values, dtype="float32")

    # Candidates -----------------------------------------------------------

    @property
    def _allowed_types(self) -> Optional[Set[Tuple[str, str]]]:
        allowed = self.cfg.get("allowed_types")
        if not self.cfg["type_constraints"] or allowed is None:
            return None
        return {(h, t) for h, t in allowed}

    def get_candidates(self, docs: Sequence[Doc], entities: Optional[Sequence[Sequence[Span]]] = None) -> Candidates:
        """The entity pairs this pipe scores for `docs` (entities from the docs by default)."""
        if entities is None:
            entities = [get_entities(doc, self.cfg["spans_key"]) for doc in docs]
        return build_candidates(
            docs,
            entities,
            max_distance=self.cfg["max_distance"],
            same_sentence=self.cfg["same_sentence"],
            allowed_types=self._allowed_types,
        )

    def _has_entity_annotation(self, doc: Doc) -> bool:
        key = self.cfg["spans_key"]
        return doc.has_annotation("ENT_IOB") if key is None else key in doc.spans

    def _training_entities(self, eg: Example) -> List[Span]:
        """Entities for training on `eg`: the predicted doc's own when an upstream
        component (or the corpus reader) set them, else the gold ones, aligned."""
        key = self.cfg["spans_key"]
        if not self.cfg["use_gold_ents"] and self._has_entity_annotation(eg.predicted):
            return get_entities(eg.predicted, key)
        gold = get_entities(eg.reference, key)
        if _same_tokens(eg):
            return [Span(eg.predicted, s.start, s.end, label=s.label) for s in gold]
        return sorted(eg.get_aligned_spans_y2x(gold, allow_overlap=True), key=lambda s: (s.start, s.end))

    # Prediction -----------------------------------------------------------

    @property
    def is_joint(self) -> bool:
        """Whether the model follows the joint protocol (finds the spans itself, see pipeline/joint.py)."""
        return self.model.attrs.get("protocol") == "joint"

    def predict(self, docs: Iterable[Doc]):
        """Probabilities for every candidate pair and output, with the candidates;
        for a joint model, its decoded triples (a JointOutput)."""
        docs = list(docs)
        if self.is_joint:
            return self.model.predict(self._joint_batch(docs, constrain=True))
        cands = self.get_candidates(docs)
        if cands.n_pairs == 0:
            return cands, numpy.zeros((0, self._n_outputs), dtype="float32")
        logits = self.model.predict((docs, cands))
        return cands, self._activate(self.model.ops.to_numpy(logits))

    def _activate(self, logits: numpy.ndarray) -> numpy.ndarray:
        if self.cfg["multi_label"]:
            return 1.0 / (1.0 + numpy.exp(-logits))
        shifted = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def set_annotations(self, docs: Iterable[Doc], cands_scores: Tuple[Candidates, Floats2d]) -> None:
        """Write the decoded relations to `doc._.relations` (replacing any)."""
        docs = list(docs)
        if isinstance(cands_scores, JointOutput):
            self._set_joint_annotations(docs, cands_scores)
            return
        cands, scores = cands_scores
        scores = numpy.asarray(scores)
        thresholds = self._thresholds()
        if self.cfg["multi_label"]:
            rows, cols = numpy.nonzero(scores[:, : len(self.labels)] >= thresholds[None, :])
        else:
            best = scores.argmax(axis=1) if scores.size else numpy.zeros((0,), dtype="int64")
            is_label = best < len(self.labels)
            best_score = scores[numpy.arange(len(best)), best] if scores.size else best
            keep = is_label & (best_score >= numpy.append(thresholds, numpy.inf)[best])
            rows = numpy.nonzero(keep)[0]
            cols = best[rows]
        pair_doc = cands.pair_doc[rows]
        heads, tails = cands.pairs[rows, 0], cands.pairs[rows, 1]
        # gather everything with array ops; the loop below only builds the
        # plain rows that are stored (one per predicted relation)
        head_spans, tail_spans = cands.spans[heads].tolist(), cands.spans[tails].tolist()
        strings, labels = self.vocab.strings, self.labels
        head_labels = [strings[x] for x in cands.labels[heads].tolist()]
        tail_labels = [strings[x] for x in cands.labels[tails].tolist()]
        values = scores[rows, cols].tolist() if len(rows) else []
        out: List[List[List[Any]]] = [[] for _ in docs]
        for d, (hs, he), hl, (ts, te), tl, c, v in zip(
            pair_doc.tolist(), head_spans, head_labels, tail_spans, tail_labels, cols.tolist(), values
        ):
            out[d].append([hs, he, hl, ts, te, tl, labels[c], v, None])
        for doc, rows_ in zip(docs, out):
            set_relation_rows(doc, rows_)

    # Training -------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples; pairs come from `_training_entities`."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RelationExtractor.update")
        for eg in examples:
            self._validate_gold(eg)
        docs = [eg.predicted for eg in examples]
        if self.is_joint:
            return self._update_joint(examples, drop=drop, sgd=sgd, losses=losses)
        cands = self.get_candidates(docs, [self._training_entities(eg) for eg in examples])
        if cands.n_pairs == 0:
            return losses
        set_dropout_rate(self.model, drop)
        logits, backprop = self.model.begin_update((docs, cands))
        loss, d_logits = self.get_loss(examples, (cands, logits))
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_targets(self, examples: Sequence[Example], cands: Candidates) -> numpy.ndarray:
        """(n_pairs, n_labels) 0/1 matrix: which gold labels each candidate pair has."""
        targets = numpy.zeros((cands.n_pairs, len(self.labels)), dtype="float32")
        label_index = {label: i for i, label in enumerate(self.labels)}
        ent_offset, pair_offset = 0, 0
        for i, eg in enumerate(examples):
            n_ents, n_pairs = int(cands.ent_lengths[i]), int(cands.pair_lengths[i])
            gold = _gold_keys(eg)
            if n_pairs and gold:
                spans = cands.spans[ent_offset : ent_offset + n_ents]
                pairs = cands.pairs[pair_offset : pair_offset + n_pairs] - ent_offset
                size = len(eg.predicted) + 1
                pair_codes = _pair_codes(spans[pairs[:, 0]], spans[pairs[:, 1]], size)
                gold_arr = numpy.array([k[:4] for k in gold], dtype="int64")
                gold_codes = _pair_codes(gold_arr[:, :2], gold_arr[:, 2:4], size)
                order = numpy.argsort(pair_codes, kind="stable")
                pos = numpy.searchsorted(pair_codes[order], gold_codes)
                pos = numpy.minimum(pos, len(order) - 1)
                found = pair_codes[order][pos] == gold_codes
                cols = numpy.array([label_index[k[4]] for k in gold], dtype="int64")
                targets[pair_offset + order[pos[found]], cols[found]] = 1.0
            ent_offset += n_ents
            pair_offset += n_pairs
        return targets

    def get_loss(self, examples: Iterable[Example], cands_logits: Tuple[Candidates, Floats2d]) -> Tuple[float, Floats2d]:
        """Binary (multi-label) or categorical (single-label) cross-entropy over
        candidate pairs, and its gradient w.r.t. the logits.

        Pairs without any gold relation are weighted by `negative_weight` and a
        random `negative_sampling` share of them is kept per update; the loss is
        averaged over the kept pairs.

        A model whose paper defines its own loss on the same targets (the
        kernel-matrix head averages BCE over token-pair blocks) sets
        `model.attrs["loss"] = "targets"`: its backprop then receives the
        targets with one extra last column of normalised pair weights instead
        of a gradient, and the loss reported here is the pipe's pair-level one.
        """
        examples = list(examples)
        if isinstance(cands_logits, JointOutput):
            return self._get_joint_loss(examples, cands_logits)
        cands, logits = cands_logits
        ops = self.model.ops
        logits_np = ops.to_numpy(logits)
        targets = self.get_targets(examples, cands)
        loss, d_logits, packed = self._label_loss(logits_np, targets)
        if self.model.attrs.get("loss") == "targets":
            return loss, ops.asarray2f(packed)
        return loss, ops.asarray2f(d_logits)

    def _label_loss(self, logits_np: numpy.ndarray, targets: numpy.ndarray) -> Tuple[float, numpy.ndarray, numpy.ndarray]:
        """The loss over rows (candidate pairs, or docs for a joint model) of
        label targets: the loss, its weighted gradient, and the targets packed
        with a last column of normalised row weights."""
        positive = targets.any(axis=1)
        weights = numpy.where(positive, 1.0, self.cfg["negative_weight"]).astype("float32")
        rate = self.cfg["negative_sampling"]
        if rate < 1.0:
            weights[~positive & (numpy.random.random(len(weights)) >= rate)] = 0.0
        n_kept = max(float((weights > 0).sum()), 1.0)
        probs = self._activate(logits_np)
        eps = 1e-7
        if self.cfg["multi_label"]:
            dist = targets
            per_pair = -(targets * numpy.log(probs + eps) + (1 - targets) * numpy.log(1 - probs + eps)).sum(axis=1)
            d_logits = probs - targets
        else:
            # several gold labels on one pair share the target mass (no label is dropped)
            n_gold = targets.sum(axis=1, keepdims=True)
            dist = numpy.concatenate([targets / numpy.maximum(n_gold, 1.0), (~positive)[:, None]], axis=1)
            per_pair = -(dist * numpy.log(probs + eps)).sum(axis=1)
            d_logits = probs - dist
        loss = float((per_pair * weights).sum() / n_kept)
        packed = numpy.concatenate([dist, (weights / n_kept)[:, None]], axis=1).astype("float32")
        d_logits = d_logits * (weights[:, None] / n_kept)
        return loss, d_logits.astype("float32"), packed

    # Joint models ---------------------------------------------------------

    def _joint_batch(self, docs: List[Doc], *, constrain: bool) -> JointBatch:
        """The joint model's input: entities constrain decoding where a doc has
        entity annotation (an NER upstream, or the corpus reader's gold ents)."""
        spans = None
        if constrain:
            key = self.cfg["spans_key"]
            spans = [
                numpy.array([(e.start, e.end) for e in get_entities(doc, key)], dtype="int64").reshape((-1, 2))
                if self._has_entity_annotation(doc) else None
                for doc in docs
            ]
        return JointBatch(
            docs=docs, langs=[get_lang(doc) for doc in docs], n_labels=len(self.labels),
            multi_label=self.cfg["multi_label"], spans=spans, thresholds=self._thresholds(),
        )

    def _joint_gold(self, eg: Example) -> numpy.ndarray:
        """(k, 5) gold rows (head start, head end, tail start, tail end, label index)."""
        index = {label: i for i, label in enumerate(self.labels)}
        rows = [(hs, he, ts, te, index[label]) for hs, he, ts, te, label in _gold_keys(eg)]
        return numpy.array(rows, dtype="int64").reshape((-1, 5))

    def _update_joint(self, examples: List[Example], *, drop: float, sgd: Optional[Optimizer], losses: Dict[str, float]) -> Dict[str, float]:
        batch = self._joint_batch([eg.predicted for eg in examples], constrain=False)
        batch.gold = [self._joint_gold(eg) for eg in examples]
        set_dropout_rate(self.model, drop)
        output, backprop = self.model.begin_update(batch)
        loss, d_logits = self.get_loss(examples, output)
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def _get_joint_loss(self, examples: List[Example], output: JointOutput) -> Tuple[float, Floats2d]:
        """beta * the relation loss over docs (targets: the labels a doc's gold
        triples carry) plus the model's span loss; the gradient is the
        relation logits' only (the model adds its span gradient itself)."""
        targets = numpy.zeros((len(examples), len(self.labels)), dtype="float32")
        for i, eg in enumerate(examples):
            targets[i, self._joint_gold(eg)[:, 4]] = 1.0
        beta = float(self.model.attrs.get("relation_weight", 1.0))
        loss, d_logits, _ = self._label_loss(self.model.ops.to_numpy(output.relation_logits), targets)
        return beta * loss + float(output.span_loss), self.model.ops.asarray2f(beta * d_logits)

    def _set_joint_annotations(self, docs: List[Doc], output: JointOutput) -> None:
        """Rows from the model's triples; a span that is one of the doc's
        entities keeps its entity label, other spans have none."""
        key = self.cfg["spans_key"]
        for doc, triples in zip(docs, output.triples or [[] for _ in docs]):
            ent_labels = {(e.start, e.end): e.label_ for e in get_entities(doc, key)}
            rows = [
                [hs, he, ent_labels.get((hs, he), ""), ts, te, ent_labels.get((ts, te), ""), self.labels[r], float(score), None]
                for hs, he, ts, te, r, score in triples
            ]
            set_relation_rows(doc, rows)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Take labels (from `labels` or the data), learn the entity-type pairs
        that carry relations, and initialize the model on a sample of pairs."""
        validate_get_examples(get_examples, "RelationExtractor.initialize")
        if labels is not None:
            for label in labels:
                self.add_label(label)
        type_pairs: Set[Tuple[str, str]] = set()
        # the first 10 examples and the first of every other language: models
        # with per-language parts (AMNRE, mERE) read their languages from it
        sample: List[Example] = []
        sample_langs: Set[str] = set()
        for eg in get_examples():
            if labels is None:
                for key in relation_keys(eg.reference):
                    self.add_label(key[4])
            self._validate_gold(eg)
            type_pairs.update(_gold_type_pairs(eg))
            lang = get_lang(eg.reference)
            if len(sample) < 10 or lang not in sample_langs:
                sample.append(eg)
                sample_langs.add(lang)
        self._require_labels()
        self.cfg["allowed_types"] = sorted([h, t] for h, t in type_pairs)
        docs = [eg.predicted for eg in sample]
        if self.is_joint:
            batch = self._joint_batch(docs, constrain=False)
            batch.gold = [self._joint_gold(eg) for eg in sample]
            lang_labels: Dict[str, Set[int]] = {}
            index = {label: i for i, label in enumerate(self.labels)}
            for eg in get_examples():
                seen = lang_labels.setdefault(get_lang(eg.reference), set())
                seen.update(index[key[4]] for key in relation_keys(eg.reference) if key[4] in index)
            batch.lang_labels = {lang: sorted(seen) for lang, seen in lang_labels.items()}
            self.model.initialize(X=batch, Y=self.model.ops.alloc2f(len(docs), self._n_outputs))
            return
        cands = self.get_candidates(docs, [self._training_entities(eg) for eg in sample])
        Y = self.model.ops.alloc2f(cands.n_pairs, self._n_outputs)
        self.model.initialize(X=(docs, cands), Y=Y)

    def _validate_gold(self, eg: Example) -> None:
        """Gold relations must name known labels and entities of the reference doc."""
        ref = eg.reference
        key = self.cfg["spans_key"]
        ents = {(s.start, s.end) for s in get_entities(ref, key)}
        where = f"doc.spans[{key!r}]" if key else "doc.ents"
        for hs, he, ts, te, label in relation_keys(ref):
            if label not in self.cfg["labels"]:
                raise ValueError(
                    f"Unknown relation label {label!r} in {_describe_doc(ref)}. The "
                    f"'{self.name}' component knows {list(self.labels)}: add it with "
                    "add_label() or let initialize() read the labels from the data."
                )
            for role, start, end in (("head", hs, he), ("tail", ts, te)):
                if (start, end) not in ents and not self.is_joint:  # a joint model finds its own spans
                    raise ValueError(
                        f"The {role} of relation {label!r} in {_describe_doc(ref)}, entity "
                        f"{ref[start:end].text!r} (tokens {start}:{end}), is not among the "
                        f"doc's entities in {where}. Add it there, or set the component's "
                        "spans_key to the span group that holds every entity."
                    )

    def tune_thresholds(self, examples: Iterable[Example], grid: Optional[Sequence[float]] = None) -> Dict[str, float]:
        """Pick each label's threshold that maximises its F1 on `examples` (a dev
        set), counting gold relations outside the candidates as misses. The
        thresholds are stored in the component (and saved with it)."""
        if not self.cfg["multi_label"]:
            raise ValueError("Per-label thresholds apply to multi_label decoding only.")
        if self.is_joint:
            raise ValueError("Per-label thresholds are tuned on candidate pairs; a joint model (MERE) decodes its own spans: use the global threshold.")
        examples = list(examples)
        grid = numpy.asarray(grid if grid is not None else numpy.arange(0.05, 1.0, 0.05), dtype="float32")
        docs = [eg.predicted for eg in examples]
        cands, probs = self.predict(docs)
        targets = self.get_targets(examples, cands).astype(bool)
        n_gold = numpy.zeros(len(self.labels))
        label_index = {label: i for i, label in enumerate(self.labels)}
        for eg in examples:
            for key in _gold_keys(eg):
                n_gold[label_index[key[4]]] += 1
        chosen = {}
        for j, label in enumerate(self.labels):
            predicted = probs[:, j][None, :] >= grid[:, None]
            tp = (predicted & targets[:, j][None, :]).sum(axis=1)
            fp = predicted.sum(axis=1) - tp
            f1 = 2 * tp / numpy.maximum(2 * tp + fp + (n_gold[j] - tp), 1)
            chosen[label] = float(round(float(grid[int(f1.argmax())]), 4))
        self.cfg["thresholds"] = chosen
        return chosen

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        validate_examples(examples, "RelationExtractor.score")
        return super().score(examples, **kwargs)


def _same_tokens(eg: Example) -> bool:
    x, y = eg.predicted, eg.reference
    return len(x) == len(y) and numpy.array_equal(x.to_array("ORTH"), y.to_array("ORTH"))


def _gold_keys(eg: Example) -> List[RelationKey]:
    """Gold relation keys in the predicted doc's token offsets."""
    keys = relation_keys(eg.reference)
    if not keys or _same_tokens(eg):
        return keys
    out = []
    for hs, he, ts, te, label in keys:
        head = eg.get_aligned_spans_y2x([eg.reference[hs:he]], allow_overlap=True)
        tail = eg.get_aligned_spans_y2x([eg.reference[ts:te]], allow_overlap=True)
        if head and tail:
            out.append((head[0].start, head[0].end, tail[0].start, tail[0].end, label))
    return out


def _gold_type_pairs(eg: Example) -> Set[Tuple[str, str]]:
    return {(str(r[2]), str(r[5])) for r in get_relation_rows(eg.reference)}


def _pair_codes(heads: numpy.ndarray, tails: numpy.ndarray, size: int) -> numpy.ndarray:
    """One int64 per (head start, head end, tail start, tail end) in a doc of `size`."""
    h = heads.astype("int64")
    t = tails.astype("int64")
    return ((h[:, 0] * size + h[:, 1]) * size + t[:, 0]) * size + t[:, 1]
