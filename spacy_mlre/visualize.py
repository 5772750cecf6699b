"""Relations drawn as labelled arcs between entities (displaCy's manual
dependency style), with the entity label under each entity.

Each entity is ONE displaCy "word" (a unit): its whole text, with its label as
the tag under it, so an arc joins whole entities, never single tokens.

Tokens outside entities stay one unit each, with an empty tag. Merging a run of
them into one unit was the alternative; it reads worse here because displaCy
gives every unit the same column width: a merged run of several words would
either spill over its neighbours or force every column to its width. One token
per unit keeps the sentence readable with ordinary word spacing, and the gap
between two entities still shows how far apart they are. Whitespace-only
tokens outside entities get no unit (they would be blank columns).

Where the entities come from: the heads and tails of the relations (so a
relation between spans that are not in `doc.ents` is drawn), `doc.ents`, and,
with `spans_key`, a span group (e.g. "entities", where the corpus reader keeps
overlapping entities).

Overlaps: spans that overlap, directly or through a chain of overlapping
spans, make one unit covering all their tokens. Its tag lists their distinct
labels, longest span first, joined by " / " (e.g. "ORG / LOC" for "New York
Times" holding "New York"). A relation of any of those spans is drawn from or
to that unit. A relation whose head and tail fall in the same unit (one nested
in the other, or the two overlapping) would be an arc from a unit to itself,
which displaCy cannot draw: it is left out of the arcs, the rest of the doc is
drawn as usual.

Arcs go head -> tail: `start`/`end` are the smaller/larger unit index and
`dir` is "right" when the head comes first, "left" when it comes after the tail
(the arrowhead is always on the tail). Identical arcs (two nested heads with the
same label to the same tail) are drawn once; a pair related in both directions
with the same label reads as one arc with an arrowhead at each end.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from spacy import displacy
from spacy.displacy.render import DEFAULT_DIR, DEFAULT_LANG
from spacy.displacy.templates import TPL_FIGURE, TPL_PAGE
from spacy.tokens import Doc, Span
from spacy.util import escape_html

from .language import get_doc_id
from .relations import Relation, get_relations

DEFAULT_OPTIONS = {"compact": False, "distance": 140, "offset_x": 60, "word_spacing": 30}
# Rough width of one character of the default 16px sans-serif font, used to
# widen the columns (and the left margin) when a unit's text would not fit.
CHAR_WIDTH = 9
COLUMN_GAP = 20


def _entity_spans(doc: Doc, relations: List[Relation], spans_key: Optional[str]) -> List[Span]:
    spans = [s for r in relations for s in (r.head, r.tail)]
    spans.extend(doc.ents)
    if spans_key is not None and spans_key in doc.spans:
        spans.extend(doc.spans[spans_key])
    return [s for s in spans if s.start < s.end]


def _clusters(spans: List[Span]) -> List[Tuple[int, int, List[Span]]]:
    """Maximal groups of (transitively) overlapping spans, in text order."""
    out: List[Tuple[int, int, List[Span]]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1][1]:
            start, end, members = out[-1]
            members.append(span)
            out[-1] = (start, max(end, span.end), members)
        else:
            out.append((span.start, span.end, [span]))
    return out


def _tag(members: List[Span]) -> str:
    labels: List[str] = []
    for span in sorted(members, key=lambda s: (s.start - s.end, s.start, s.label_)):
        if span.label_ and span.label_ not in labels:
            labels.append(span.label_)
    return " / ".join(labels)


def relation_parse(
    doc: Doc, relations: Optional[List[Relation]] = None, *, spans_key: Optional[str] = None
) -> Dict[str, Any]:
    """The displaCy manual-dependency dict ({"words", "arcs", "title"}) for one
    doc and its relations (default: `doc._.relations`). `spans_key` adds the
    spans of that span group as entities. See the module docstring for how
    entities, other tokens, overlaps and directions are drawn."""
    relations = get_relations(doc) if relations is None else list(relations)
    clusters = {start: (end, members) for start, end, members in _clusters(_entity_spans(doc, relations, spans_key))}
    words: List[Dict[str, str]] = []
    unit_of_token: Dict[int, int] = {}
    i = 0
    while i < len(doc):
        if i in clusters:
            end, members = clusters[i]
            for t in range(i, end):
                unit_of_token[t] = len(words)
            words.append({"text": " ".join(doc[i:end].text.split()), "tag": _tag(members)})
            i = end
            continue
        if not doc[i].is_space:
            words.append({"text": doc[i].text, "tag": ""})
        i += 1
    arcs: List[Dict[str, Any]] = []
    for rel in relations:
        h, t = unit_of_token[rel.head.start], unit_of_token[rel.tail.start]
        if h == t:
            continue
        arc = {"start": min(h, t), "end": max(h, t), "label": rel.label, "dir": "right" if h < t else "left"}
        if arc not in arcs:
            arcs.append(arc)
    return {"words": words, "arcs": arcs, "title": get_doc_id(doc)}


def _fitted_options(parse: Dict[str, Any], options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Defaults widened so that no unit's text (or tag) runs into its
    neighbour's; options given by the caller win."""
    sizes = [CHAR_WIDTH * max(len(w["text"]), len(w["tag"])) for w in parse["words"]]
    distance = max([DEFAULT_OPTIONS["distance"]] + [(a + b) / 2 + COLUMN_GAP for a, b in zip(sizes, sizes[1:])])
    offset_x = max([DEFAULT_OPTIONS["offset_x"]] + [s / 2 + COLUMN_GAP for s in sizes[:1]])
    return {**DEFAULT_OPTIONS, "distance": int(distance), "offset_x": int(offset_x), **(options or {})}


def _escaped(parse: Dict[str, Any]) -> Dict[str, Any]:
    # displaCy escapes the words' text but writes tags, arc labels and the
    # title into the markup as they are
    return {
        "words": [{"text": w["text"], "tag": escape_html(w["tag"])} for w in parse["words"]],
        "arcs": [{**a, "label": escape_html(a["label"])} for a in parse["arcs"]],
        "title": escape_html(parse["title"]) if parse["title"] else None,
    }


def render_relations(
    docs: Union[Doc, Iterable[Doc]],
    *,
    page: bool = True,
    options: Optional[Dict[str, Any]] = None,
    spans_key: Optional[str] = None,
) -> str:
    """HTML (a page, or markup to embed) with one arc diagram per doc. Each
    diagram's column width fits its longest units unless `options` sets
    "distance" / "offset_x"; `spans_key` as in `relation_parse`."""
    if isinstance(docs, Doc):
        docs = [docs]
    svgs = []
    for doc in docs:
        parse = relation_parse(doc, spans_key=spans_key)
        opts = _fitted_options(parse, options)
        svgs.append(displacy.render(_escaped(parse), style="dep", manual=True, page=False, options=opts, jupyter=False))
    if not page:
        return "".join(svgs)
    content = "".join(TPL_FIGURE.format(content=svg) for svg in svgs)
    return TPL_PAGE.format(content=content, lang=DEFAULT_LANG, dir=DEFAULT_DIR).strip()
