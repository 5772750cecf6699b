"""Bag keys (AMNRE): which relation instances express the same fact.

A bag is every candidate pair (head, tail) that expresses the same fact,
across docs and languages. Its key, per pair, is the first of these sources
that gives one (`KEY_SOURCES`, configurable):

- "relation": an explicit id. The converters store one on each gold relation
  (Multi-CrossRE: "<doc_key>|<h>|<t>", the head and tail indices in the
  English record, so one instance has one key in every language); an
  application can set ids for unlabelled pairs with `set_pair_bag_keys`.
- "kb": the head and tail entities' `kb_id_`, "<head kb>|<tail kb>".
- "text": the head and tail texts, lower-cased with whitespace collapsed.

Explicit ids on gold relations exist only for related pairs, so grouping
held-out data by them would tell the model which pairs are related; for
evaluation use sources that do not depend on the labels ("kb", "text").

This module reads docs only, so the model (ml/models/amnre.py) and the
batcher and corpus-level inference (bags.py) can both use it.
"""
from typing import Dict, List, Sequence, Tuple

from spacy.tokens import Doc

from .relations import get_relation_rows

PAIR_KEYS = "spacy_mlre.pair_bag_keys"
KEY_SOURCES = ("relation", "kb", "text")
SpanPair = Tuple[int, int, int, int]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def set_pair_bag_keys(doc: Doc, keys: Dict[SpanPair, str]) -> None:
    """Explicit bag ids for (head start, head end, tail start, tail end) pairs of
    `doc`, stored as plain data so they survive DocBin and pickling."""
    doc.user_data[PAIR_KEYS] = [[int(a), int(b), int(c), int(d), str(k)] for (a, b, c, d), k in keys.items()]


def explicit_keys(doc: Doc) -> Dict[SpanPair, str]:
    """Explicit ids of `doc`: set with `set_pair_bag_keys`, then those stored on its relations."""
    out: Dict[SpanPair, str] = {}
    for row in get_relation_rows(doc):
        if row[8]:
            out[(int(row[0]), int(row[1]), int(row[3]), int(row[4]))] = str(row[8])
    for a, b, c, d, key in doc.user_data.get(PAIR_KEYS, []):
        out[(int(a), int(b), int(c), int(d))] = str(key)
    return out


def _kb_ids(doc: Doc) -> Dict[Tuple[int, int], str]:
    out = {}
    for group in [doc.ents, *doc.spans.values()]:
        for span in group:
            if span.kb_id_:
                out.setdefault((span.start, span.end), span.kb_id_)
    return out


def pair_bag_keys(doc: Doc, pairs: Sequence[SpanPair], sources: Sequence[str] = KEY_SOURCES) -> List[str]:
    """The bag key of each (hs, he, ts, te) pair of `doc`, from the first source that has one."""
    unknown = set(sources) - set(KEY_SOURCES)
    if unknown or not sources:
        raise ValueError(f"Unknown bag key source(s) {sorted(unknown)}: choose from {list(KEY_SOURCES)}.")
    explicit = explicit_keys(doc) if "relation" in sources else {}
    kb = _kb_ids(doc) if "kb" in sources else {}
    keys = []
    for pair in pairs:
        hs, he, ts, te = (int(v) for v in pair)
        key = None
        for source in sources:
            if source == "relation":
                key = explicit.get((hs, he, ts, te))
            elif source == "kb":
                h, t = kb.get((hs, he)), kb.get((ts, te))
                key = f"{h}|{t}" if h and t else None
            else:
                key = f"{_norm(doc[hs:he].text)}|{_norm(doc[ts:te].text)}"
            if key is not None:
                break
        keys.append(key if key is not None else f"{hs}:{he}|{ts}:{te}@{id(doc)}")
    return keys
