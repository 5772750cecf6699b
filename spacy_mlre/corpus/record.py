"""The format-independent record every parser produces, and the checks that
reject a malformed one.

Each format module turns its raw source records into `Record`s (words,
entities as token offsets, relations by entity index); `build.build_doc` then
makes the Doc under one set of rules for all formats. Called Record, not
Example, so it never shadows `spacy.training.Example`, which the corpus reader
and the evaluation yield.
"""
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

UNTYPED_LABEL = "ENT"
"""Entity label for datasets whose entities have no type (SemEval, KBP37, CasRel, SMiLER)."""


class InvalidRecord(Exception):
    """A malformed source record. `kind` is the short reason counted under
    `--skip-invalid`; `detail` says what exactly was wrong."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Record:
    """One source record, format-independent, before it becomes a Doc.

    entities: (start, end, label) token offsets, end exclusive.
    relations: (head entity index, tail entity index, label, bag key).
    notes: what the format parser dropped or repaired, as
    ("dropped" | "repaired", kind) -> count; merged into the split's counts
    only when the whole record is valid.
    """

    words: List[str]
    spaces: List[bool]
    entities: List[Tuple[int, int, str]] = field(default_factory=list)
    relations: List[Tuple[int, int, str, Optional[str]]] = field(default_factory=list)
    doc_id: Optional[str] = None
    lang: Optional[str] = None
    relations_read: Optional[int] = None
    kb_ids: Optional[List[Optional[str]]] = None
    notes: Counter = field(default_factory=Counter)

    def drop(self, kind: str, n: int = 1) -> None:
        self.notes[("dropped", kind)] += n

    def repair(self, kind: str, n: int = 1) -> None:
        self.notes[("repaired", kind)] += n


def load_json_line(line: str) -> Any:
    """One JSON value; bad JSON is an invalid record, not a crash."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidRecord("bad JSON", err.msg + f" (column {err.colno})") from None


def require(record: Dict[str, Any], key: str, kind: type) -> Any:
    """A required field of a JSON record with its type checked."""
    if not isinstance(record, dict):
        raise InvalidRecord("record is not a JSON object", f"got {type(record).__name__}")
    if key not in record:
        raise InvalidRecord("missing field", f"field {key!r} is missing")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRecord("wrong field type", f"field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value
