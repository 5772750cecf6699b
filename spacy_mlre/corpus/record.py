"""The format-independent record every parser produces, and the checks that
reject a malformed one.

Each format module turns its raw source records into `Record`s (words,
entities as token offsets, relations by entity index); `build.build_doc` then
makes the Doc under one set of rules for all formats. Called Record, not
Example, so it never shadows `spacy.training.Example`, which the corpus reader
and the evaluation yield.
"""
import json
import re
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
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidRecord("bad JSON", err.msg + f" (column {err.colno})") from None
    except (RecursionError, ValueError) as err:
        raise InvalidRecord("bad JSON", load_error_detail(err)) from None
    check_no_lone_surrogates(line, value)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_no_lone_surrogates(source: str, value: Any) -> None:
    """JSON may escape half of a UTF-16 surrogate pair ("\\ud800") on its own:
    that is no character, and spaCy's string store (UTF-8) cannot hold it, so
    the record is malformed. Only walked when the source has such an escape."""
    if _SURROGATE_ESCAPE.search(source) is None:
        return
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            m = _SURROGATE.search(item)
            if m:
                raise InvalidRecord(
                    "bad JSON", f"\\u{ord(m.group()):04x} in {brief(item)} is half of a surrogate pair, not a character"
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_error_detail(err: Exception) -> str:
    """What json's other errors mean: values nested deeper than Python's
    recursion limit, or an integer longer than int() accepts."""
    if isinstance(err, RecursionError):
        return "values nested too deeply"
    return str(err)


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


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON true / false are ints to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


_LANG_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def check_lang(value: Any, where: str) -> str:
    """A language tag such as 'de' or 'pt-BR'; anything else would be stored as
    a language of its own and scored as one."""
    if not isinstance(value, str) or not _LANG_TAG.fullmatch(value):
        raise InvalidRecord("bad language code", f"{where}: expected a code such as 'de' or 'pt-BR', got {brief(value)}")
    return value


def brief(value: Any, limit: int = 80) -> str:
    """repr of a value, cut for error messages (a record can be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
