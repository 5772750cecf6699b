"""Record -> Doc, with one set of rules for every format.

Duplicate entities are merged, no-relation labels become no relation,
self-relations and exact duplicate relations are dropped, and overlapping
entities keep their relations through a span group; each of these is noted on
the record so `stats.SplitStats` counts it. docs/data-formats.md documents the
rules.
"""
from typing import Dict, FrozenSet, List, Sequence, Tuple

from spacy.tokens import Doc, Span
from spacy.util import filter_spans
from spacy.vocab import Vocab

from ..relations import Relation
from .record import InvalidRecord, Record, is_int

ENTITY_GROUP = "entities"
"""The span group holding every entity, overlapping ones included."""

# Kinds of dropped / repaired items, shared so the summary and docs use one wording.
DROP_DUPLICATE = "duplicate relation (same head, tail and label; first kept)"
DROP_SELF = "self-relation (head and tail are the same entity span)"
REPAIR_DUP_ENTITY = "duplicate entity (same span and label) merged"


def _dedupe_entities(rec: Record) -> Tuple[List[Tuple[int, int, str]], List[int]]:
    """Merge entities with the same span and label; return them and the
    old-index -> new-index map (relations keep pointing at the same entity)."""
    seen: Dict[Tuple[int, int, str], int] = {}
    unique: List[Tuple[int, int, str]] = []
    remap: List[int] = []
    for ent in rec.entities:
        if ent in seen:
            rec.repair(REPAIR_DUP_ENTITY)
        else:
            seen[ent] = len(unique)
            unique.append(ent)
        remap.append(seen[ent])
    return unique, remap


def _check_entities(rec: Record, entities: Sequence[Tuple[int, int, str]]) -> None:
    n = len(rec.words)
    for start, end, label in entities:
        if not (is_int(start) and is_int(end)) or not 0 <= start < end <= n:
            raise InvalidRecord(
                "entity offsets outside the text",
                f"entity {label!r} at tokens {start}:{end} (end exclusive), text has {n} tokens",
            )
        if not isinstance(label, str) or not label:
            raise InvalidRecord("entity without a label", f"entity at tokens {start}:{end}")


def _select_relations(
    rec: Record, spans: List[Span], remap: List[int], no_relation: FrozenSet[str]
) -> List[Relation]:
    """Apply the shared relation rules: no-relation labels become no record,
    self-relations and exact duplicates are dropped; all three are counted."""
    out: List[Relation] = []
    seen = set()
    n = len(remap)
    for head, tail, label, bag in rec.relations:
        for role, idx in (("head", head), ("tail", tail)):
            if not is_int(idx) or not 0 <= idx < n:
                raise InvalidRecord(
                    "relation names a missing entity",
                    f"{role} entity index {idx!r} of relation {label!r}; the record has {n} entities",
                )
        if not isinstance(label, str) or not label:
            raise InvalidRecord("relation without a label", f"relation {head}->{tail}")
        if label in no_relation:
            rec.notes[("no_relation", label)] += 1
            continue
        h, t = spans[remap[head]], spans[remap[tail]]
        if (h.start, h.end) == (t.start, t.end):
            rec.drop(DROP_SELF)
            continue
        key = (h.start, h.end, t.start, t.end, label)
        if key in seen:
            rec.drop(DROP_DUPLICATE)
            continue
        seen.add(key)
        out.append(Relation(h, t, label, 1.0, bag))
    return out


def build_doc(vocab: Vocab, rec: Record, no_relation: FrozenSet[str] = frozenset()) -> Tuple[Doc, int]:
    """The Doc of one Record and the number of its entities in `doc.ents`.

    Every entity goes in `doc.spans["entities"]`; `doc.ents` gets the
    non-overlapping ones chosen by `spacy.util.filter_spans` (longest first,
    then earliest), so an overlapping entity keeps its relations through the
    span group.
    """
    if len(rec.words) != len(rec.spaces):
        raise InvalidRecord("token list mismatch", f"{len(rec.words)} words but {len(rec.spaces)} spaces")
    if not rec.words:
        raise InvalidRecord("empty text")
    if any(not w for w in rec.words):
        raise InvalidRecord("empty token", f"token {rec.words.index('')} is an empty string")
    entities, remap = _dedupe_entities(rec)
    _check_entities(rec, entities)
    doc = Doc(vocab, words=rec.words, spaces=rec.spaces)
    spans = [Span(doc, s, e, label=label) for s, e, label in entities]
    if rec.kb_ids is not None:
        for old, kb_id in enumerate(rec.kb_ids):
            if kb_id:
                spans[remap[old]].kb_id_ = kb_id
    doc.spans[ENTITY_GROUP] = spans
    ents = filter_spans(spans)
    doc.ents = ents
    if rec.lang:
        doc._.lang = rec.lang
    if rec.doc_id is not None:
        doc._.doc_id = rec.doc_id
    doc._.relations = _select_relations(rec, spans, remap, no_relation)
    return doc, len(ents)
