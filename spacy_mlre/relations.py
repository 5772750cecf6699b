"""Relations on the Doc: the `Relation` record and its plain-data storage.

`doc._.relations` is a view over rows of plain data in `doc.user_data`, so the
relations survive `DocBin(store_user_data=True)`, `Doc.to_bytes`, pickling and
`nlp.pipe(n_process=2)` without any custom serializer. A row is

    [head_start, head_end, head_label, tail_start, tail_end, tail_label,
     label, score, bag_key]

with token offsets (end exclusive), strings, a Python float and an optional
string. Gold relations of reference docs use exactly the same storage.
"""
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span

RELATIONS_KEY = "spacy_mlre.relations"

RelationKey = Tuple[int, int, int, int, str]


class Relation(NamedTuple):
    """A directed, labelled relation between two entity spans of one doc.

    Several labels on one pair are several records; (A, B) and (B, A) are
    different pairs. `bag_key` groups instances of the same relation across
    docs and languages (AMNRE); it is None unless a converter or app set it.
    """

    head: Span
    tail: Span
    label: str
    score: float = 1.0
    bag_key: Optional[str] = None

    @property
    def key(self) -> RelationKey:
        """Token offsets and label: what the scorer compares."""
        return (self.head.start, self.head.end, self.tail.start, self.tail.end, self.label)


RelationLike = Union[Relation, Tuple[Any, ...]]


def _describe_doc(doc: Doc) -> str:
    from .language import get_doc_id

    doc_id = get_doc_id(doc)
    text = doc.text if len(doc.text) <= 60 else doc.text[:57] + "..."
    return f"doc {doc_id!r} ({text!r})" if doc_id else f"doc {text!r}"


def _check_span(doc: Doc, span: Any, role: str, label: str) -> Span:
    if not isinstance(span, Span):
        raise TypeError(
            f"Relation {label!r} in {_describe_doc(doc)}: {role} must be a spaCy "
            f"Span, got {type(span).__name__}."
        )
    if span.doc is not doc:
        raise ValueError(
            f"Relation {label!r} in {_describe_doc(doc)}: {role} {span.text!r} "
            f"({span.start}:{span.end}) belongs to another doc."
        )
    if span.start >= span.end:
        raise ValueError(
            f"Relation {label!r} in {_describe_doc(doc)}: {role} span "
            f"{span.start}:{span.end} is empty."
        )
    return span


def _to_row(doc: Doc, rel: RelationLike) -> List[Any]:
    if not isinstance(rel, Relation):
        if not 3 <= len(rel) <= 5:
            raise ValueError(
                f"A relation in {_describe_doc(doc)} must be Relation(head, tail, "
                f"label, score=1.0, bag_key=None), got {rel!r}."
            )
        rel = Relation(*rel)
    label = rel.label
    if not isinstance(label, str) or not label:
        raise ValueError(f"Relation label in {_describe_doc(doc)} must be a non-empty string, got {label!r}.")
    head = _check_span(doc, rel.head, "head", label)
    tail = _check_span(doc, rel.tail, "tail", label)
    bag = None if rel.bag_key is None else str(rel.bag_key)
    return [
        head.start, head.end, head.label_,
        tail.start, tail.end, tail.label_,
        label, float(rel.score), bag,
    ]


def _row_sort_key(row: Sequence[Any]) -> Tuple[int, int, int, int, str]:
    return (int(row[0]), int(row[1]), int(row[3]), int(row[4]), str(row[6]))


def set_relations(doc: Doc, relations: Iterable[RelationLike]) -> None:
    """Replace the doc's relations. Order is made deterministic (by head,
    tail, label); a repeated (head, tail, label) is an error, not a silent
    merge, because it usually means a data bug upstream."""
    rows = [_to_row(doc, rel) for rel in relations]
    rows.sort(key=_row_sort_key)
    for prev, row in zip(rows, rows[1:]):
        if _row_sort_key(prev) == _row_sort_key(row):
            raise ValueError(
                f"Duplicate relation {row[6]!r} from {doc[row[0]:row[1]].text!r} "
                f"({row[0]}:{row[1]}) to {doc[row[3]:row[4]].text!r} "
                f"({row[3]}:{row[4]}) in {_describe_doc(doc)}."
            )
    doc.user_data[RELATIONS_KEY] = rows


def set_relation_rows(doc: Doc, rows: List[List[Any]]) -> None:
    """Store rows built by a pipe directly: the fast path for predictions,
    which come from distinct candidate pairs and need no validation."""
    doc.user_data[RELATIONS_KEY] = sorted(rows, key=_row_sort_key)


def get_relation_rows(doc: Doc) -> List[List[Any]]:
    """The stored rows (plain data), for code that needs no Span objects."""
    return doc.user_data.get(RELATIONS_KEY, [])


def get_relations(doc: Doc) -> List[Relation]:
    """Build Relation records from the stored rows."""
    out = []
    for hs, he, hl, ts, te, tl, label, score, bag in get_relation_rows(doc):
        head = Span(doc, int(hs), int(he), label=hl)
        tail = Span(doc, int(ts), int(te), label=tl)
        out.append(Relation(head, tail, label, float(score), bag))
    return out


def relation_keys(doc: Doc) -> List[RelationKey]:
    """(head_start, head_end, tail_start, tail_end, label) of every relation."""
    return [
        (int(r[0]), int(r[1]), int(r[3]), int(r[4]), str(r[6]))
        for r in get_relation_rows(doc)
    ]


def has_relation_annotation(doc: Doc) -> bool:
    """True when relations were set on the doc, even to an empty list: an
    unannotated doc and a doc annotated with 'no relation' differ for scoring."""
    return RELATIONS_KEY in doc.user_data
