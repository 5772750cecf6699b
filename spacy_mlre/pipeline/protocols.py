"""How the `relation_extractor` pipe talks to its two kinds of model.

Everything that differs between pair-scoring models (candidate entity pairs
in, a score per pair and output out) and joint models (MERE: docs in, triples
with their own spans out) lives here, one class per protocol, so the pipe
itself has no branch on the kind of model. Both give the pipe the same
things: the model's input for docs or examples, the label targets of its
loss rows (candidate pairs, or docs), and annotations from its output. The
data types are in ml/inputs.py; the loss and the decoding in ml/losses.py.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example

from ..language import get_lang
from ..ml.inputs import Candidates, JointBatch, JointOutput, PairInputs, output_logits
from ..ml.losses import activate, decode_labels
from ..relations import RelationKey, relation_keys, set_relation_rows
from .candidates import get_entities


def get_protocol(pipe: TrainablePipe) -> "PairProtocol":
    """The protocol the pipe's model follows: `model.attrs["protocol"]`."""
    name = pipe.model.attrs.get("protocol", "pair")
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown model protocol {name!r} of {pipe.model.name}: expected one of {sorted(PROTOCOLS)}.")
    return PROTOCOLS[name](pipe)


class PairProtocol:
    """Pair-scoring models: `(docs, Candidates)` in, logits per pair out."""

    # gold relations must join entities the pipe offers as candidates
    needs_gold_entities = True
    tunable = True

    def __init__(self, pipe: TrainablePipe) -> None:
        self.pipe = pipe

    def inputs(self, docs: List[Doc]) -> PairInputs:
        return docs, self.pipe.get_candidates(docs)

    def training_inputs(self, examples: Sequence[Example]) -> PairInputs:
        docs = [eg.predicted for eg in examples]
        return docs, self.pipe.get_candidates(docs, [self.pipe._training_entities(eg) for eg in examples])

    def initialize_inputs(self, sample: Sequence[Example], get_examples: Callable[[], Iterable[Example]]) -> PairInputs:
        return self.training_inputs(sample)

    def n_rows(self, X: PairInputs) -> int:
        return X[1].n_pairs

    def predict(self, docs: List[Doc]) -> Tuple[Candidates, numpy.ndarray]:
        """The candidates and the probability of every pair and output."""
        X = self.inputs(docs)
        if X[1].n_pairs == 0:
            return X[1], numpy.zeros((0, self.pipe._n_outputs), dtype="float32")
        logits = output_logits(self.pipe.model.predict(X))
        return X[1], activate(self.pipe.model.ops.to_numpy(logits), self.pipe.cfg["multi_label"])

    def set_annotations(self, docs: List[Doc], scores: Tuple[Candidates, numpy.ndarray]) -> None:
        cands, probs = scores
        probs = numpy.asarray(probs)
        rows, cols = decode_labels(probs, self.pipe._thresholds(), self.pipe.cfg["multi_label"])
        pair_doc = cands.pair_doc[rows]
        heads, tails = cands.pairs[rows, 0], cands.pairs[rows, 1]
        # gather everything with array ops; the loop below only builds the
        # plain rows that are stored (one per predicted relation)
        head_spans, tail_spans = cands.spans[heads].tolist(), cands.spans[tails].tolist()
        strings, labels = self.pipe.vocab.strings, self.pipe.labels
        head_labels = [strings[x] for x in cands.labels[heads].tolist()]
        tail_labels = [strings[x] for x in cands.labels[tails].tolist()]
        values = probs[rows, cols].tolist() if len(rows) else []
        out: List[List[List[Any]]] = [[] for _ in docs]
        for d, (hs, he), hl, (ts, te), tl, c, v in zip(
            pair_doc.tolist(), head_spans, head_labels, tail_spans, tail_labels, cols.tolist(), values
        ):
            out[d].append([hs, he, hl, ts, te, tl, labels[c], v, None])
        for doc, rows_ in zip(docs, out):
            set_relation_rows(doc, rows_)

    def targets(self, examples: Sequence[Example], X: PairInputs) -> numpy.ndarray:
        """(n_pairs, n_labels) 0/1: which gold labels each candidate pair has."""
        cands = X[1]
        labels = self.pipe.labels
        targets = numpy.zeros((cands.n_pairs, len(labels)), dtype="float32")
        label_index = {label: i for i, label in enumerate(labels)}
        ent_offset, pair_offset = 0, 0
        for i, eg in enumerate(examples):
            n_ents, n_pairs = int(cands.ent_lengths[i]), int(cands.pair_lengths[i])
            gold = gold_keys(eg)
            if n_pairs and gold:
                spans = cands.spans[ent_offset : ent_offset + n_ents]
                pairs = cands.pairs[pair_offset : pair_offset + n_pairs] - ent_offset
                size = len(eg.predicted) + 1
                pair_codes = _pair_codes(spans[pairs[:, 0]], spans[pairs[:, 1]], size)
                gold_arr = numpy.array([k[:4] for k in gold], dtype="int64")
                gold_codes = _pair_codes(gold_arr[:, :2], gold_arr[:, 2:4], size)
                order = numpy.argsort(pair_codes, kind="stable")
                pos = numpy.minimum(numpy.searchsorted(pair_codes[order], gold_codes), len(order) - 1)
                found = pair_codes[order][pos] == gold_codes
                cols = numpy.array([label_index[k[4]] for k in gold], dtype="int64")
                targets[pair_offset + order[pos[found]], cols[found]] = 1.0
            ent_offset += n_ents
            pair_offset += n_pairs
        return targets


class JointProtocol(PairProtocol):
    """Joint models (MERE): a `JointBatch` in, a `JointOutput` out; the loss
    rows are docs (which relations a doc holds). Entities, where a doc has
    them, only constrain the model's span decoding."""

    needs_gold_entities = False
    tunable = False

    def inputs(self, docs: List[Doc]) -> JointBatch:
        return self._batch(docs, constrain=True)

    def training_inputs(self, examples: Sequence[Example]) -> JointBatch:
        batch = self._batch([eg.predicted for eg in examples], constrain=False)
        batch.gold = [self._gold(eg) for eg in examples]
        return batch

    def initialize_inputs(self, sample: Sequence[Example], get_examples: Callable[[], Iterable[Example]]) -> JointBatch:
        """The sample, and the labels seen per language in all the training data
        (a relation never seen with a language is not predicted for it)."""
        batch = self.training_inputs(sample)
        index = {label: i for i, label in enumerate(self.pipe.labels)}
        lang_labels: Dict[str, Set[int]] = {}
        for eg in get_examples():
            seen = lang_labels.setdefault(get_lang(eg.reference), set())
            seen.update(index[key[4]] for key in relation_keys(eg.reference) if key[4] in index)
        batch.lang_labels = {lang: sorted(seen) for lang, seen in lang_labels.items()}
        return batch

    def n_rows(self, X: JointBatch) -> int:
        return len(X.docs)

    def predict(self, docs: List[Doc]) -> JointOutput:
        return self.pipe.model.predict(self.inputs(docs))

    def set_annotations(self, docs: List[Doc], output: JointOutput) -> None:
        """Rows from the model's triples; a span that is one of the doc's
        entities keeps its entity label, other spans have none."""
        key = self.pipe.cfg["spans_key"]
        labels = self.pipe.labels
        for doc, triples in zip(docs, output.triples or [[] for _ in docs]):
            ent_labels = {(e.start, e.end): e.label_ for e in get_entities(doc, key)}
            rows = [
                [hs, he, ent_labels.get((hs, he), ""), ts, te, ent_labels.get((ts, te), ""), labels[r], float(score), None]
                for hs, he, ts, te, r, score in triples
            ]
            set_relation_rows(doc, rows)

    def targets(self, examples: Sequence[Example], X: JointBatch) -> numpy.ndarray:
        """(n_docs, n_labels) 0/1: the labels of each doc's gold triples."""
        targets = numpy.zeros((len(X.docs), len(self.pipe.labels)), dtype="float32")
        for i, gold in enumerate(X.gold or [self._gold(eg) for eg in examples]):
            targets[i, gold[:, 4]] = 1.0
        return targets

    def _batch(self, docs: List[Doc], *, constrain: bool) -> JointBatch:
        """Entities constrain decoding where a doc has entity annotation (an NER
        upstream, or the corpus reader's gold ents)."""
        spans: Optional[List[Optional[numpy.ndarray]]] = None
        if constrain:
            key = self.pipe.cfg["spans_key"]
            spans = [
                numpy.array([(e.start, e.end) for e in get_entities(doc, key)], dtype="int64").reshape((-1, 2))
                if self.pipe._has_entity_annotation(doc) else None
                for doc in docs
            ]
        return JointBatch(
            docs=docs, langs=[get_lang(doc) for doc in docs], n_labels=len(self.pipe.labels),
            multi_label=self.pipe.cfg["multi_label"], spans=spans, thresholds=self.pipe._thresholds(),
        )

    def _gold(self, eg: Example) -> numpy.ndarray:
        """(k, 5) gold rows (head start, head end, tail start, tail end, label index)."""
        index = {label: i for i, label in enumerate(self.pipe.labels)}
        rows = [(hs, he, ts, te, index[label]) for hs, he, ts, te, label in gold_keys(eg)]
        return numpy.array(rows, dtype="int64").reshape((-1, 5))


PROTOCOLS = {"pair": PairProtocol, "joint": JointProtocol}


def same_tokens(eg: Example) -> bool:
    x, y = eg.predicted, eg.reference
    return len(x) == len(y) and numpy.array_equal(x.to_array("ORTH"), y.to_array("ORTH"))


def gold_keys(eg: Example) -> List[RelationKey]:
    """Gold relation keys in the predicted doc's token offsets."""
    keys = relation_keys(eg.reference)
    if not keys or same_tokens(eg):
        return keys
    out = []
    for hs, he, ts, te, label in keys:
        head = eg.get_aligned_spans_y2x([eg.reference[hs:he]], allow_overlap=True)
        tail = eg.get_aligned_spans_y2x([eg.reference[ts:te]], allow_overlap=True)
        if head and tail:
            out.append((head[0].start, head[0].end, tail[0].start, tail[0].end, label))
    return out


def _pair_codes(heads: numpy.ndarray, tails: numpy.ndarray, size: int) -> numpy.ndarray:
    """One int64 per (head start, head end, tail start, tail end) in a doc of `size`."""
    h = heads.astype("int64")
    t = tails.astype("int64")
    return ((h[:, 0] * size + h[:, 1]) * size + t[:, 0]) * size + t[:, 1]
