"""Relations on the Doc: the `Relation` record and its plain-data storage.

`doc._.relations` is a view over rows of plain data in `doc.user_data`, so the
relations survive `DocBin(store_user_data=True)`, `Doc.to_bytes`, pickling and
`nlp.pipe(n_process=2)` without any custom serializer. A row is

    [head_start, head_end, head_label, tail_start, tail_end, tail_label,
     label, score, bag_key,
     head_start_char, head_end_char, tail_start_char, tail_end_char]

with token offsets (end exclusive), strings, a Python float, an optional
string and the character offsets of the same spans. Gold relations of
reference docs use exactly the same storage.

Why character offsets too: a retokenizer (`merge_entities` after the pipe,
`doc.retokenize()` in an app) changes the doc's tokens but never its text,
so token offsets stored before it point at other tokens. Every read checks
that each row's tokens still cover its characters and, where they no longer
do, maps the characters back to the new tokens; a span a merge cut through
cannot be mapped and is an error that says so. Rows of 9 fields, written
before the character offsets were kept, are still read.

The list `doc._.relations` returns is built anew on every read, so it is
read-only: changing it would change nothing stored. Assign a new list.
"""
import math
from typing import Any, Iterable, List, NamedTuple, NoReturn, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span

RELATIONS_KEY = "spacy_mlre.relations"

RelationKey = Tuple[int, int, int, int, str]

_N_TOKEN_FIELDS = 9
"""Fields of a row written before character offsets were stored."""


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


class RelationList(list):
    """What `doc._.relations` returns: a list built from the stored rows on
    every read, so changing it in place would be silently lost. Its mutators
    raise instead; `doc._.relations += [rel]` works (it assigns a new list).
    Compares equal to a plain list with the same items."""

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "doc._.relations is read-only: it is rebuilt from the doc's stored relations on "
            "every read, so changing it in place would change nothing. Assign a new list "
            "instead, e.g. doc._.relations = [*doc._.relations, rel] (or [] to clear)."
        )

    append = extend = insert = remove = pop = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __imul__ = _read_only

    def __iadd__(self, other: Iterable[Any]) -> List[Any]:  # type: ignore[override,misc]
        # `doc._.relations += [...]` then assigns the new list through the setter
        return list(self) + list(other)

    def __reduce__(self) -> Tuple[Any, ...]:
        # pickle and copy would otherwise rebuild the list through `extend`
        return (RelationList, (list(self),))


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


def _is_text(value: str) -> bool:
    """Whether a string can be stored: a lone surrogate ('\\ud800', from a JSON
    escape or a decode with errors='surrogateescape') cannot be encoded as
    UTF-8, so DocBin and Doc.to_bytes would fail later, far from the cause."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_score(doc: Doc, score: Any, label: str) -> float:
    """A finite number as a Python float: thresholds, sorting and the scorer
    compare scores, and a string or NaN would compare wrongly, not fail."""
    if isinstance(score, (str, bytes, bool)):
        value = None
    else:
        try:
            value = float(score)
        except (TypeError, ValueError):
            value = None
    if value is None or not math.isfinite(value):
        raise ValueError(
            f"Relation {label!r} in {_describe_doc(doc)}: score must be a finite number, got {score!r}."
        )
    return value


def _as_relation(doc: Doc, rel: Any) -> Relation:
    if isinstance(rel, Relation):
        return rel
    if not isinstance(rel, (tuple, list)) or not 3 <= len(rel) <= 5:
        raise TypeError(
            f"A relation in {_describe_doc(doc)} must be Relation(head, tail, "
            f"label, score=1.0, bag_key=None) or such a tuple, got {rel!r}."
        )
    return Relation(*rel)


def _to_row(doc: Doc, rel: RelationLike) -> List[Any]:
    rel = _as_relation(doc, rel)
    label = rel.label
    if not isinstance(label, str) or not label or not _is_text(label):
        raise ValueError(f"Relation label in {_describe_doc(doc)} must be a non-empty string, got {label!r}.")
    head = _check_span(doc, rel.head, "head", label)
    tail = _check_span(doc, rel.tail, "tail", label)
    score = _check_score(doc, rel.score, label)
    if rel.bag_key is not None and not isinstance(rel.bag_key, str):
        raise TypeError(
            f"Relation {label!r} in {_describe_doc(doc)}: bag_key must be a string or None, "
            f"got {type(rel.bag_key).__name__}."
        )
    if rel.bag_key is not None and not _is_text(rel.bag_key):
        raise ValueError(f"Relation {label!r} in {_describe_doc(doc)}: bag_key {rel.bag_key!r} is not valid text.")
    return [
        head.start, head.end, head.label_,
        tail.start, tail.end, tail.label_,
        label, score, rel.bag_key,
        head.start_char, head.end_char, tail.start_char, tail.end_char,
    ]


def _row_sort_key(row: Sequence[Any]) -> Tuple[int, int, int, int, str]:
    return (int(row[0]), int(row[1]), int(row[3]), int(row[4]), str(row[6]))


def _check_relations_value(relations: Any) -> None:
    """Reject what iterates but is no list of relations: None (the usual way to
    mean 'clear'), a string, a mapping, a single Relation (a tuple itself)."""
    if isinstance(relations, Relation):
        raise TypeError("doc._.relations must be a list of relations: wrap the single Relation in a list.")
    if relations is None or isinstance(relations, (str, bytes, dict)) or not isinstance(relations, Iterable):
        raise TypeError(
            "doc._.relations must be a list of Relation(head, tail, label, score=1.0, bag_key=None) "
            f"(or such tuples), got {type(relations).__name__}; assign [] to clear the relations."
        )


def set_relations(doc: Doc, relations: Iterable[RelationLike]) -> None:
    """Replace the doc's relations. Order is made deterministic (by head,
    tail, label); a repeated (head, tail, label) is an error, not a silent
    merge, because it usually means a data bug upstream."""
    _check_relations_value(relations)
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


def _with_char_offsets(doc: Doc, row: List[Any]) -> List[Any]:
    hs, he, ts, te = int(row[0]), int(row[1]), int(row[3]), int(row[4])
    return [*row[:_N_TOKEN_FIELDS], doc[hs].idx, _end_char(doc, he), doc[ts].idx, _end_char(doc, te)]


def _end_char(doc: Doc, end: int) -> int:
    token = doc[end - 1]
    return token.idx + len(token)


def set_relation_rows(doc: Doc, rows: List[List[Any]]) -> None:
    """Store rows built by a pipe directly: the fast path for predictions,
    which come from distinct candidate pairs and need no validation. Rows of
    the 9 token fields get their character offsets added here."""
    rows = [row if len(row) > _N_TOKEN_FIELDS else _with_char_offsets(doc, row) for row in rows]
    doc.user_data[RELATIONS_KEY] = sorted(rows, key=_row_sort_key)


def _covers(doc: Doc, start: int, end: int, start_char: int, end_char: int) -> bool:
    """Whether tokens start:end are still exactly characters start_char:end_char."""
    return 0 <= start < end <= len(doc) and doc[start].idx == start_char and _end_char(doc, end) == end_char


def _row_is_current(doc: Doc, row: Sequence[Any]) -> bool:
    hs, he, ts, te = int(row[0]), int(row[1]), int(row[3]), int(row[4])
    if len(row) <= _N_TOKEN_FIELDS:  # an old row: nothing to realign it with
        return 0 <= hs < he <= len(doc) and 0 <= ts < te <= len(doc)
    hcs, hce, tcs, tce = (int(v) for v in row[_N_TOKEN_FIELDS:_N_TOKEN_FIELDS + 4])
    return _covers(doc, hs, he, hcs, hce) and _covers(doc, ts, te, tcs, tce)


def _retokenized_error(doc: Doc, row: Sequence[Any], role: str, where: str, problem: str) -> NoReturn:
    raise ValueError(
        f"Relation {row[6]!r} in {_describe_doc(doc)}: its {role} ({where}) {problem}. The doc was "
        "retokenized after its relations were set (for example merge_entities or merge_noun_chunks "
        "added after relation_extractor, or doc.retokenize() in your code). Retokenize before the "
        "relations are set: nlp.add_pipe('merge_entities', before='relation_extractor'), or set "
        "doc._.relations again after retokenizing."
    )


def _realign(doc: Doc, row: Sequence[Any]) -> List[Any]:
    """The row with token offsets re-derived from its character offsets on the
    doc's current tokens; an error when a span no longer starts and ends on a
    token boundary (a merge cut through it) or an old row lies outside the doc."""
    out = list(row)
    for role, (i, j), c in (("head", (0, 1), _N_TOKEN_FIELDS), ("tail", (3, 4), _N_TOKEN_FIELDS + 2)):
        start, end = int(row[i]), int(row[j])
        if len(row) <= _N_TOKEN_FIELDS:
            if not 0 <= start < end <= len(doc):
                _retokenized_error(
                    doc, row, role, f"tokens {start}:{end}",
                    f"is outside the doc's {len(doc)} tokens, and this row was stored without the "
                    "character offsets that would find its new tokens",
                )
            continue
        start_char, end_char = int(row[c]), int(row[c + 1])
        span = doc.char_span(start_char, end_char)
        if span is None or span.start >= span.end:
            _retokenized_error(
                doc, row, role, f"characters {start_char}:{end_char}, {doc.text[start_char:end_char]!r}",
                "no longer starts and ends on token boundaries: a merge cut through it",
            )
        out[i], out[j] = span.start, span.end
    return out


def get_relation_rows(doc: Doc) -> List[List[Any]]:
    """The stored rows (plain data), for code that needs no Span objects; rows
    a retokenizer moved are realigned to the current tokens (and stored so)."""
    rows = doc.user_data.get(RELATIONS_KEY, [])
    if all(_row_is_current(doc, row) for row in rows):
        return rows
    rows = sorted((_realign(doc, row) for row in rows), key=_row_sort_key)
    doc.user_data[RELATIONS_KEY] = rows
    return rows


def get_relations(doc: Doc) -> RelationList:
    """Build Relation records from the stored rows (read-only: see RelationList)."""
    out = RelationList()
    for row in get_relation_rows(doc):
        hs, he, hl, ts, te, tl, label, score, bag = row[:_N_TOKEN_FIELDS]
        head = Span(doc, int(hs), int(he), label=hl)
        tail = Span(doc, int(ts), int(te), label=tl)
        list.append(out, Relation(head, tail, label, float(score), bag))
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
