"""Candidate entity pairs for a batch of docs, as flat arrays.

The pipe decides which entities and pairs a model scores; every pair-scoring
architecture receives the same `Candidates` (ml/inputs.py) next to the docs, so the rules
(distance limit, same-sentence, entity-type constraints) live in one place.
Pairs are built per doc with array operations, never a Python loop per pair.
"""
from typing import Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.tokens import Doc, Span

from ..ml.inputs import Candidates

TypePair = Tuple[str, str]


def get_entities(doc: Doc, spans_key: Optional[str] = None) -> List[Span]:
    """The entities a pipe works on: `doc.ents`, or a span group (overlaps
    allowed, as spancat writes them), sorted by position then label.

    Two spans with the same offsets are one entity (the first label in sorted
    order wins): relations are scored by offsets, so a second copy would only
    create contradicting duplicate pairs.
    """
    if spans_key is None:
        ents: Iterable[Span] = doc.ents
    else:
        ents = doc.spans[spans_key] if spans_key in doc.spans else []
    out: List[Span] = []
    seen = set()
    for span in sorted(ents, key=lambda s: (s.start, s.end, s.label_)):
        if (span.start, span.end) not in seen:
            seen.add((span.start, span.end))
            out.append(span)
    return out


def build_candidates(
    docs: Sequence[Doc],
    entities: Sequence[Sequence[Span]],
    *,
    max_distance: Optional[int] = None,
    same_sentence: bool = False,
    allowed_types: Optional[Set[TypePair]] = None,
) -> Candidates:
    """Ordered pairs of distinct entities of each doc that pass the filters.

    max_distance: most tokens allowed between the two spans (None: no limit).
    same_sentence: both entities must start in the same sentence (docs without
        sentence boundaries count as one sentence).
    allowed_types: (head label, tail label) combinations to keep, learned from
        training data; None keeps all.
    """
    all_spans, all_labels, ent_lengths, all_pairs, pair_lengths = [], [], [], [], []
    offset = 0
    for doc, ents in zip(docs, entities):
        n = len(ents)
        spans = numpy.array([(e.start, e.end) for e in ents], dtype="int64").reshape((n, 2))
        labels = numpy.array([e.label for e in ents], dtype="uint64")
        pairs = _doc_pairs(doc, ents, spans, max_distance, same_sentence, allowed_types)
        all_spans.append(spans)
        all_labels.append(labels)
        all_pairs.append(pairs + offset)
        ent_lengths.append(n)
        pair_lengths.append(pairs.shape[0])
        offset += n
    return Candidates(
        spans=numpy.concatenate(all_spans) if all_spans else numpy.zeros((0, 2), dtype="int64"),
        labels=numpy.concatenate(all_labels) if all_labels else numpy.zeros((0,), dtype="uint64"),
        ent_lengths=numpy.array(ent_lengths, dtype="int64"),
        pairs=numpy.concatenate(all_pairs) if all_pairs else numpy.zeros((0, 2), dtype="int64"),
        pair_lengths=numpy.array(pair_lengths, dtype="int64"),
    )


def _doc_pairs(
    doc: Doc,
    ents: Sequence[Span],
    spans: numpy.ndarray,
    max_distance: Optional[int],
    same_sentence: bool,
    allowed_types: Optional[Set[TypePair]],
) -> numpy.ndarray:
    n = len(ents)
    if n < 2:
        return numpy.zeros((0, 2), dtype="int64")
    starts, ends = spans[:, 0], spans[:, 1]
    same_span = (starts[:, None] == starts[None, :]) & (ends[:, None] == ends[None, :])
    keep = ~same_span
    if max_distance is not None:
        gap = numpy.maximum(starts[None, :] - ends[:, None], starts[:, None] - ends[None, :])
        keep &= gap <= max_distance
    if same_sentence and doc.has_annotation("SENT_START"):
        sent_ids = numpy.cumsum(doc.to_array("SENT_START") == 1)
        ent_sent = sent_ids[starts]
        keep &= ent_sent[:, None] == ent_sent[None, :]
    if allowed_types is not None:
        names = [e.label_ for e in ents]
        uniq = sorted(set(names))
        index = {name: i for i, name in enumerate(uniq)}
        allowed = numpy.array([[(h, t) in allowed_types for t in uniq] for h in uniq], dtype=bool)
        ids = numpy.array([index[name] for name in names])
        keep &= allowed[ids[:, None], ids[None, :]]
    heads, tails = numpy.nonzero(keep)
    return numpy.stack([heads, tails], axis=1).astype("int64")
