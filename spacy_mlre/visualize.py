"""Relations drawn as labelled arcs between entities (displaCy's manual
dependency style), with the entity label under each entity.

Each entity becomes one displaCy "word", so an arc joins whole entities, not
tokens; overlapping entities (span groups) keep the longest one as the word and
draw the relations of the others from the word that contains them.
"""
from typing import Any, Dict, Iterable, List, Optional, Union

from spacy import displacy
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from .relations import Relation, get_relations


def relation_parse(doc: Doc, relations: Optional[List[Relation]] = None) -> Dict[str, Any]:
    """The displaCy manual-dependency dict for one doc and its relations."""
    relations = get_relations(doc) if relations is None else relations
    entities = {(s.start, s.end): s for r in relations for s in (r.head, r.tail)}
    for ent in doc.ents:
        entities.setdefault((ent.start, ent.end), ent)
    units = filter_spans(list(entities.values()))
    unit_of_token = {}
    words: List[Dict[str, str]] = []
    i = 0
    for unit in sorted(units, key=lambda s: s.start) + [Span(doc, len(doc), len(doc))]:
        while i < unit.start:
            unit_of_token[i] = len(words)
            words.append({"text": doc[i].text, "tag": ""})
            i += 1
        if unit.start < unit.end:
            for t in range(unit.start, unit.end):
                unit_of_token[t] = len(words)
            words.append({"text": unit.text, "tag": unit.label_})
            i = unit.end
    arcs = []
    for rel in relations:
        h, t = unit_of_token[rel.head.start], unit_of_token[rel.tail.start]
        if h == t:
            continue
        arcs.append({"start": min(h, t), "end": max(h, t), "label": rel.label, "dir": "right" if h < t else "left"})
    return {"words": words, "arcs": arcs, "title": doc.user_data.get("spacy_mlre.doc_id")}


def render_relations(
    docs: Union[Doc, Iterable[Doc]], *, page: bool = True, options: Optional[Dict[str, Any]] = None
) -> str:
    """HTML (a page, or markup to embed) with one arc diagram per doc."""
    if isinstance(docs, Doc):
        docs = [docs]
    parses = [relation_parse(doc) for doc in docs]
    opts = {"compact": False, "distance": 140, "offset_x": 60, "word_spacing": 30, **(options or {})}
    return displacy.render(parses, style="dep", manual=True, page=page, options=opts, jupyter=False)
