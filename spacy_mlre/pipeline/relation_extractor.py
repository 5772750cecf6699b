"""The `relation_extractor` pipe: entity pairs in, `doc._.relations` out."""
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import numpy
import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..about import __version__
from ..language import get_lang
from ..relations import _describe_doc, get_relation_rows, relation_keys, set_relation_rows
from ..scorer import score_relations
from ..ml.inputs import Candidates
from ..ml.losses import label_loss, row_weights
from .candidates import build_candidates, get_entities
from .protocols import gold_keys, get_protocol, same_tokens

default_model_config = """
[model]
@architectures = "spacy_mlre.PairClassifier.v2"
entity_type_width = 16
context = true
product = false

[model.reducer]
@layers = "reduce_mean.v1"

[model.scorer]
@architectures = "spacy_mlre.PairScorer.v1"
hidden_width = 128
dropout = 0.1

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 64
rows = [5000, 1000, 2500, 1000]
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
include_static_vectors = false

[model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = ${model.tok2vec.embed.width}
window_size = 1
maxout_pieces = 3
depth = 2
"""
DEFAULT_REL_MODEL = Config().from_str(default_model_config)["model"]
# what tune_thresholds maximises on the dev data: each label's own F1 (so the macro F1), or the micro F1
TUNE_OBJECTIVES = ("label", "micro")


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
        "dropout": None,
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
    dropout: Optional[float],
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
        dropout=dropout,
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
    decoding. What differs between the two is in pipeline/protocols.py.
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
        dropout: Optional[float] = None,
        scorer: Optional[Callable] = score_relations,
    ) -> None:
        """`dropout`: the rate of this pipe's updates, in place of the one
        `spacy train` hands every component (training.dropout); None keeps
        that one. A pipeline whose NER wants 0.1 and whose relation head
        wants more (configs/ner_pair_e5.cfg) sets it here."""
        if not 0.0 < negative_sampling <= 1.0:
            raise ValueError(f"negative_sampling is the share of no-relation pairs kept per update: it must be in (0, 1], got {negative_sampling}.")
        if dropout is not None and not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is the rate of the '{name}' component's updates: it must be in [0, 1) or null, got {dropout}.")
        self.vocab = vocab
        self.model = model
        self._protocol = get_protocol(self)
        # inputs of the batches whose auxiliary_update waits for finish_update
        self._pending_auxiliary: List[Any] = []
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
            "dropout": dropout,
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
        if same_tokens(eg):
            return [Span(eg.predicted, s.start, s.end, label=s.label) for s in gold]
        return sorted(eg.get_aligned_spans_y2x(gold, allow_overlap=True), key=lambda s: (s.start, s.end))

    # Prediction -----------------------------------------------------------

    def predict(self, docs: Iterable[Doc]):
        """Pair models: the candidates and the probability of every pair and
        output. Joint models: their decoded triples (a JointOutput)."""
        return self._protocol.predict(list(docs))

    def set_annotations(self, docs: Iterable[Doc], scores) -> None:
        """Write the decoded relations to `doc._.relations` (replacing any)."""
        self._protocol.set_annotations(list(docs), scores)

    # Training -------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples; pairs come from `_training_entities`.

        A model with extra training steps of its own (AMNRE's adversarial
        updates, `model.attrs["auxiliary_update"]`) takes them in
        `finish_update`, where an optimizer steps the weights, on the inputs
        of the batches learned from since the last step: spaCy's training
        calls `update` without an optimizer and then `finish_update`, and
        without an optimizer no weight may change."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RelationExtractor.update")
        for eg in examples:
            self._validate_gold(eg)
        X = self._protocol.training_inputs(examples)
        if self._protocol.n_rows(X) == 0:
            return losses
        own_drop = self.cfg.get("dropout")
        set_dropout_rate(self.model, drop if own_drop is None else own_drop)
        if self.model.attrs.get("auxiliary_update") is not None:
            self._pending_auxiliary.append(X)
        Y, backprop = self.model.begin_update(X)
        loss, dY = self.get_loss(examples, (X, Y))
        backprop(dY)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Step the weights with `sgd`, after the model's own extra steps
        (`auxiliary_update`) on the batches learned from since the last step."""
        auxiliary = self.model.attrs.get("auxiliary_update")
        pending, self._pending_auxiliary = self._pending_auxiliary, []
        if auxiliary is not None:
            for X in pending:
                auxiliary(self.model, X)
        super().finish_update(sgd)

    def get_targets(self, examples: Sequence[Example], X) -> numpy.ndarray:
        """(n_rows, n_labels) 0/1: the gold labels of each loss row of the
        model's input X (candidate pairs, or docs for a joint model)."""
        return self._protocol.targets(list(examples), X)

    def get_loss(self, examples: Iterable[Example], inputs_output: Tuple[Any, Any]) -> Tuple[float, Any]:
        """The loss of the model's output for its input X on `examples`, and the
        gradient that its backprop takes (same type and shape as the output).

        Binary (multi-label) or categorical (single-label) cross-entropy over
        the loss rows; rows without any gold relation are weighted by
        `negative_weight` and a random `negative_sampling` share of them is
        kept per update (ml/losses.py). A model whose paper defines its own
        loss (the kernel head's block-averaged BCE, mERE's Eq. 12, AMNRE's bag
        loss) sets `model.attrs["get_loss"]` (ml/inputs.py, LossHook), which
        receives the same targets and row weights.
        """
        X, Y = inputs_output
        targets = self.get_targets(examples, X)
        weights = row_weights(targets, self.cfg["negative_weight"], self.cfg["negative_sampling"])
        hook = self.model.attrs.get("get_loss")
        if hook is not None:
            return hook(self.model, X, Y, targets, weights, self.cfg["multi_label"])
        ops = self.model.ops
        loss, d_logits = label_loss(ops.to_numpy(Y), targets, weights, self.cfg["multi_label"])
        return loss, ops.asarray2f(d_logits)

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
        read = _TrainingDataCount()
        for eg in get_examples():
            read.add(eg, self.cfg["spans_key"])
            if labels is None:
                for key in relation_keys(eg.reference):
                    self.add_label(key[4])
            self._validate_gold(eg)
            type_pairs.update(_gold_type_pairs(eg))
            lang = get_lang(eg.reference)
            if len(sample) < 10 or lang not in sample_langs:
                sample.append(eg)
                sample_langs.add(lang)
        self._check_training_data(read, labels_given=labels is not None)
        self._require_labels()
        self.cfg["allowed_types"] = sorted([h, t] for h, t in type_pairs)
        X = self._protocol.initialize_inputs(sample, get_examples)
        Y = self.model.ops.alloc2f(self._protocol.n_rows(X), self._n_outputs)
        self.model.initialize(X=X, Y=Y)
        # the labels in output order, saved with the weights: a cfg whose labels
        # were edited or reordered later no longer matches them (see _check_labels_fit)
        self.model.attrs["labels"] = list(self.labels)

    def _check_training_data(self, read: "_TrainingDataCount", *, labels_given: bool) -> None:
        """Training data without examples, or without any gold relation to take
        labels from, is an error that says what was read, rather than spaCy's
        E143 ("labels not initialized"). Labels given to initialize (spacy
        train's [initialize] labels) and no relation to learn them from: a warning.
        Labels added beforehand and no data is how a pipe is set up without
        training (nlp.initialize() with spaCy's dummy example): nothing to say."""
        where = (
            f"the '{self.name}' component's initialize() read {read}. With spacy train, the data is "
            "[paths.train] (the reader in [corpora.train]): point it at a converted training split "
            "(python -m spacy_mlre convert writes them)"
        )
        if read.examples == 0:
            raise ValueError(f"No training examples: {where}.")
        if read.relations == 0 and not self.labels:
            raise ValueError(
                f"No gold relations in the training data, so there are no labels to learn: {where}, or give "
                f"the labels with [initialize.components.{self.name}.labels] to train on negatives only."
            )
        if read.relations == 0 and labels_given:
            warnings.warn(f"No gold relations in the training data: {where}. Every pair is trained as a negative.")

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
                if (start, end) not in ents and self._protocol.needs_gold_entities:
                    raise ValueError(
                        f"The {role} of relation {label!r} in {_describe_doc(ref)}, entity "
                        f"{ref[start:end].text!r} (tokens {start}:{end}), is not among the "
                        f"doc's entities in {where}. Add it there, or set the component's "
                        "spans_key to the span group that holds every entity."
                    )

    def tune_thresholds(
        self, examples: Iterable[Example], grid: Optional[Sequence[float]] = None, objective: str = "label"
    ) -> Dict[str, float]:
        """Pick per-label thresholds from `grid` on `examples` (a dev set),
        counting gold relations outside the candidates as misses, and return
        the chosen ones; they are stored in the component (and saved with it).

        objective: "label" gives each label the threshold that maximises its own
        F1, which maximises the macro F1 (the mean of the labels' F1); "micro"
        maximises the micro F1 of all labels together (coordinate ascent from
        the "label" choice, so dev micro F1 never ends below it). The two differ
        for rare labels: their own F1 is best at a low threshold, which adds
        more false positives than the micro F1 gains.

        Only labels with gold relations in `examples` are tuned: on a label
        without any, every threshold scores F1 0 and the lowest would win, so
        such a label keeps the threshold it had. Single-label models are tuned
        the same way on the pairs where the label is the most probable one
        (decode_labels)."""
        if objective not in TUNE_OBJECTIVES:
            raise ValueError(f"tune_thresholds: objective must be one of {', '.join(TUNE_OBJECTIVES)}, got {objective!r}.")
        if not self._protocol.tunable:
            raise ValueError("Per-label thresholds are tuned on candidate pairs; a joint model (MERE) decodes its own spans: use the global threshold.")
        examples = list(examples)
        self._warn_unknown_labels(examples, "the tuning (dev) data", "they are left out of tuning")
        examples = [_without_labels(eg, set(self.labels)) for eg in examples]
        n_gold = self._gold_counts(examples)
        if not n_gold.any():
            raise ValueError(
                f"No gold relations of the '{self.name}' component's labels {list(self.labels)} in the "
                f"{len(examples)} docs of the tuning (dev) data: each label's threshold is chosen by its F1 "
                "on gold relations, so there is nothing to tune on. Pass the dev split with its gold "
                "relations (as python -m spacy_mlre convert writes it)."
            )
        grid = numpy.asarray(grid if grid is not None else numpy.arange(0.05, 1.0, 0.05), dtype="float32")
        docs = [eg.predicted for eg in examples]
        cands, probs = self.predict(docs)
        targets = self.get_targets(examples, (docs, cands)).astype(bool)
        n_labels = len(self.labels)
        # single-label: a label is predicted only where it is the most probable label
        eligible = None if self.cfg["multi_label"] or not len(probs) else probs[:, :n_labels].argmax(axis=1)
        tuned = [j for j in range(n_labels) if n_gold[j] > 0]
        # true and false positives of each tuned label at each grid threshold: (labels, grid)
        tp = numpy.zeros((len(tuned), len(grid)), dtype="int64")
        fp = numpy.zeros_like(tp)
        for row, j in enumerate(tuned):
            predicted = probs[:, j][None, :] >= grid[:, None]
            if eligible is not None:
                predicted &= (eligible == j)[None, :]
            tp[row] = (predicted & targets[:, j][None, :]).sum(axis=1)
            fp[row] = predicted.sum(axis=1) - tp[row]
        gold = n_gold[tuned][:, None]
        picks = (2 * tp / numpy.maximum(tp + fp + gold, 1)).argmax(axis=1)
        if objective == "micro":
            # labels kept as they are still add their false positives to the micro F1
            kept = [j for j in range(n_labels) if n_gold[j] == 0]
            kept_fp = 0
            if kept and len(probs):
                predicted = probs[:, kept] >= self._thresholds()[kept][None, :]
                if eligible is not None:
                    predicted &= eligible[:, None] == numpy.asarray(kept)[None, :]
                kept_fp = int(predicted.sum())
            picks = _micro_f_picks(tp, fp, int(n_gold.sum()), kept_fp, picks)
        chosen = {self.labels[j]: float(round(float(grid[g]), 4)) for j, g in zip(tuned, picks)}
        self.cfg["thresholds"] = {**(self.cfg.get("thresholds") or {}), **chosen}
        return chosen

    def _gold_counts(self, examples: Sequence[Example]) -> numpy.ndarray:
        """Gold relations per label (in the predicted docs' tokens, as scored)."""
        label_index = {label: i for i, label in enumerate(self.labels)}
        n_gold = numpy.zeros(len(self.labels))
        for eg in examples:
            for key in gold_keys(eg):
                n_gold[label_index[key[4]]] += 1
        return n_gold

    def _warn_unknown_labels(self, examples: Sequence[Example], data: str, effect: str) -> None:
        """Gold labels the component does not know were not in its training
        data (initialize() reads only that), so it never predicts them: say so
        where dev data shows up (scoring, tuning) instead of letting them pass
        as silent misses."""
        known = set(self.labels)
        unknown = Counter(key[4] for eg in examples for key in relation_keys(eg.reference) if key[4] not in known)
        if unknown:
            listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(unknown.items()))
            warnings.warn(
                f"Gold relations in {data} have labels the '{self.name}' component was not trained on: "
                f"{listed}. It knows {list(self.labels)} and never predicts the others, so {effect}. "
                "If they should be learned, put examples of them in the training data and retrain."
            )

    # Serialization --------------------------------------------------------

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        self.cfg["saved_with"] = __version__
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path, *, exclude=tuple()) -> None:
        self.cfg["saved_with"] = __version__
        super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "RelationExtractor":
        with self._load_errors("bytes"):
            super().from_bytes(bytes_data, exclude=exclude)
        self._check_labels_fit("bytes")
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "RelationExtractor":
        if "cfg" not in exclude:
            _check_cfg_file(self.name, Path(path) / "cfg")
        with self._load_errors(str(path)):
            super().from_disk(path, exclude=exclude)
        self._check_labels_fit(str(path))
        return self

    def _check_labels_fit(self, where: str) -> None:
        """The cfg's labels name the model's outputs, in order. A cfg whose
        labels were edited, reordered or emptied would load and predict nothing
        or the wrong labels, so it is compared with the weights: the labels
        stored with them at initialize (`model.attrs["labels"]`, which also
        catches a reordering) or, in pipelines saved before that, their width."""
        labels = list(self.labels)
        trained = self.model.attrs.get("labels")
        if trained is not None and list(trained) != labels:
            problem = f"its cfg lists the labels {labels}, its model was trained on {list(trained)} (in this order)"
        elif self.model.has_dim("nO") is True and self.model.get_dim("nO") != self._n_outputs:
            outputs = f"{len(labels)} labels" + ("" if self.cfg["multi_label"] else " plus no-relation")
            problem = f"its cfg lists {outputs} ({labels}), its model has {self.model.get_dim('nO')} outputs"
        else:
            return
        raise ValueError(
            f"The '{self.name}' component ({where}) does not fit its model weights: {problem}. Its cfg "
            "(labels, multi_label) was changed after the pipeline was saved: restore the cfg file that was "
            "saved with the weights, or retrain the pipeline (spacy train)."
        )

    @contextmanager
    def _load_errors(self, where: str) -> Iterator[None]:
        """Weights that do not fit the architecture of the pipeline's config
        mean the pipeline was saved by another version: say so, and what to do."""
        try:
            yield
        except ValueError as err:
            if "deserialize" not in str(err) and "shape" not in str(err):
                raise
            saved = self.cfg.get("saved_with") or "an unknown version (before 0.2)"
            raise ValueError(
                f"The '{self.name}' component ({where}) could not load its model weights: {err}. "
                f"Its weights do not fit the model its config builds ({self.model.name}); they were saved "
                f"with spacy-mlre {saved}, this is {__version__}. Retrain the pipeline with this "
                "version (spacy train), or load it with the version that saved it."
            ) from err

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """The relation scores; gold labels the component was not trained on (a
        label seen only in dev data, which initialize() never reads) are warned
        about here, where spacy train and evaluate hand it the dev data."""
        examples = list(examples)
        validate_examples(examples, "RelationExtractor.score")
        self._warn_unknown_labels(
            examples, "the evaluation data",
            "these scores, of its own labels, leave them out (python -m spacy_mlre evaluate counts them as missed)",
        )
        return super().score(examples, **kwargs)


def get_relation_extractor(nlp: Language, name: Optional[str] = None, *, where: str = "The pipeline") -> RelationExtractor:
    """The pipeline's relation extractor: the component `name`, or by default
    the first RelationExtractor. Commands that tune, evaluate or time one call
    this right after loading, so that a pipeline without one (or with one that
    was never trained) stops before any data is read, with its components
    named, instead of spaCy's KeyError or an error from inside the model."""
    found = [n for n, pipe in nlp.pipeline if isinstance(pipe, RelationExtractor)]
    if name is None and found:
        name = found[0]
    if name in found:
        pipe = nlp.get_pipe(name)
        if not pipe.labels:
            raise ValueError(
                f"{where} has a '{name}' component without labels: it was never trained. Train the "
                "pipeline first (spacy train with one of the configs in configs/)."
            )
        return pipe
    if name is None:
        has = "no relation_extractor component"
    elif name in nlp.pipe_names:
        has = f"a component '{name}', but it is a {type(nlp.get_pipe(name)).__name__}, not a relation_extractor"
    else:
        has = f"no component '{name}'"
    todo = (f"Name the relation extractor, '{found[0]}' (--component {found[0]})." if found else
            "Use a pipeline trained with a relation_extractor (spacy train with one of the configs in configs/).")
    raise ValueError(f"{where} has {has}; its components are {nlp.pipe_names}. {todo}")


class _TrainingDataCount:
    """What initialize() read, to say so when it is not enough to train on."""

    def __init__(self) -> None:
        self.examples = 0
        self.entities = 0
        self.relations = 0
        self.langs: Set[str] = set()

    def add(self, eg: Example, spans_key: Optional[str]) -> None:
        self.examples += 1
        self.entities += len(get_entities(eg.reference, spans_key))
        self.relations += len(get_relation_rows(eg.reference))
        self.langs.add(get_lang(eg.reference))

    def __str__(self) -> str:
        langs = f" in {', '.join(sorted(self.langs))}" if self.langs else ""
        return (f"{_count(self.examples, 'example')}{langs} with {_count(self.entities, 'entity', 'entities')} "
                f"and {_count(self.relations, 'gold relation')}")


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _check_cfg_file(name: str, path: Path) -> None:
    """The cfg holds the labels that name the model's outputs: a pipeline
    folder without one, or with one that is not a JSON object, cannot be used
    (spaCy would load the factory defaults, or fail inside srsly)."""
    if not path.exists():
        problem = "is missing"
    else:
        try:
            cfg = srsly.read_json(path)
        except ValueError as err:
            problem = f"is not valid JSON ({err})"
        else:
            problem = "" if isinstance(cfg, dict) else f"holds a {type(cfg).__name__}, not a JSON object"
    if problem:
        raise ValueError(
            f"The '{name}' component's cfg file {path} {problem}. It holds the component's labels, in the "
            "order of the model's outputs, and its settings: restore it from the saved pipeline, or retrain "
            "the pipeline (spacy train)."
        )


def _micro_f_picks(tp: numpy.ndarray, fp: numpy.ndarray, n_gold: int, extra_fp: int, picks: numpy.ndarray) -> numpy.ndarray:
    """Grid indices, one per label, that maximise the micro F1 of all labels:
    `tp` and `fp` (labels, grid) count each label's true and false positives
    at each threshold; `extra_fp` are false positives outside them. Coordinate
    ascent from `picks`: each label in turn takes its best threshold given
    the others', until no label changes (it can only rise, so it ends)."""
    picks = numpy.array(picks, dtype="int64")
    rows = numpy.arange(len(picks))

    def micro_f(p: numpy.ndarray) -> float:
        true_pos = int(tp[rows, p].sum())
        return 2 * true_pos / max(true_pos + int(fp[rows, p].sum()) + extra_fp + n_gold, 1)

    best = micro_f(picks)
    changed = True
    while changed:
        changed = False
        for row in rows:
            others_tp = int(tp[rows, picks].sum()) - tp[row, picks[row]]
            others_fp = int(fp[rows, picks].sum()) - fp[row, picks[row]] + extra_fp
            scores = 2 * (others_tp + tp[row]) / numpy.maximum(others_tp + tp[row] + others_fp + fp[row] + n_gold, 1)
            g = int(scores.argmax())
            if scores[g] > best + 1e-12:
                picks[row], best, changed = g, float(scores[g]), True
    return picks


def _without_labels(eg: Example, keep: Set[str]) -> Example:
    """`eg`, or a copy whose reference has only the gold relations of `keep`."""
    rows = get_relation_rows(eg.reference)
    if all(row[6] in keep for row in rows):
        return eg
    reference = eg.reference.copy()
    set_relation_rows(reference, [row for row in rows if row[6] in keep])
    return Example(eg.predicted, reference)


def _gold_type_pairs(eg: Example) -> Set[Tuple[str, str]]:
    return {(str(r[2]), str(r[5])) for r in get_relation_rows(eg.reference)}


def entity_setters(nlp: Language, before: Optional[str] = None) -> List[str]:
    """The components that write entities (their factory `assigns` doc.ents or
    doc.spans: ner, entity_ruler, spancat ...), those before `before` only
    when given. Scoring or tuning with gold entities runs the pipeline
    without them: spaCy's ner keeps preset entities but adds its own in the
    tokens between them, which would add candidate pairs that gold-entity
    scores must not have."""
    names = nlp.pipe_names
    if before is not None and before in names:
        names = names[: names.index(before)]
    return [
        name for name in names
        if any(attr == "doc.ents" or attr.startswith("doc.spans") for attr in nlp.get_pipe_meta(name).assigns)
    ]


def set_spans_key(nlp: Language, name: str, spans_key: Optional[str]) -> None:
    """Make the component `name` read its entities from `spans_key` (None:
    doc.ents), in its cfg (saved with its weights, and what a loaded pipe
    reads) and in the pipeline's config, so that config.cfg says the same."""
    nlp.get_pipe(name).cfg["spans_key"] = spans_key
    pipe_config = getattr(nlp, "_pipe_configs", {}).get(name)
    if pipe_config is not None:
        pipe_config["spans_key"] = spans_key
