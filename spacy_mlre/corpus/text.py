"""Text helpers shared by the formats that give raw text and character offsets:
tokenisation that keeps every entity boundary a token boundary, and the
`<e1>..</e1>` / `<e2>..</e2>` markup of SemEval, KBP37, RELX and SMiLER.
"""
import re
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Tuple

from spacy.language import Language
from spacy.vocab import Vocab

from .record import InvalidRecord

CharSpan = Tuple[int, int]


@lru_cache(maxsize=1)
def shared_nlp() -> Language:
    """One multilingual blank pipeline: its vocab is shared by every doc of every
    language, its rule-based tokenizer splits raw text for the formats without
    tokens (no language-specific tokenizer, which for ja/ko/th/vi needs extra
    packages)."""
    import spacy

    return spacy.blank("xx")


def shared_vocab() -> Vocab:
    return shared_nlp().vocab


def tokenize_with_cuts(text: str, cuts: Iterable[int]) -> Tuple[List[str], List[bool], Dict[int, int], Dict[int, int]]:
    """Tokenise `text` with the multilingual tokenizer so that every offset in
    `cuts` is a token boundary: the text is split at the cuts and each piece is
    tokenised on its own. Returns words, spaces, and maps from a token's start
    char and end char to its index. `"".join(w + " " * s)` is exactly `text`
    (extra whitespace becomes whitespace tokens, as spaCy does)."""
    tokenizer = shared_nlp().tokenizer
    bounds = sorted({0, len(text), *(c for c in cuts if 0 < c < len(text))})
    words: List[str] = []
    spaces: List[bool] = []
    for a, b in zip(bounds, bounds[1:]):
        for tok in tokenizer(text[a:b]):
            _append(words, spaces, tok.text, bool(tok.whitespace_))
    starts: Dict[int, int] = {}
    ends: Dict[int, int] = {}
    pos = 0
    for i, (w, s) in enumerate(zip(words, spaces)):
        starts[pos] = i
        pos += len(w)
        ends[pos] = i
        pos += int(s)
    assert pos == len(text), "tokenisation must reproduce the text"
    return words, spaces, starts, ends


def _append(words: List[str], spaces: List[bool], word: str, space: bool) -> None:
    """Add a token; a whitespace token that starts with one space after a word
    without trailing space becomes that word's trailing space (a cut made the
    tokenizer see the space as a token of its own)."""
    if word.isspace() and words and not spaces[-1] and word[0] == " ":
        spaces[-1] = True
        word = word[1:]
        if not word:
            if space:  # "x" + " " + " " : the second space stays a token
                words.append(" ")
                spaces.append(False)
            return
    words.append(word)
    spaces.append(space)


def char_spans_to_tokens(spans: List[CharSpan], starts: Dict[int, int], ends: Dict[int, int]) -> List[Tuple[int, int]]:
    """Token offsets (end exclusive) of character spans cut by tokenize_with_cuts."""
    out = []
    for start, end in spans:
        if start not in starts or end not in ends:
            raise InvalidRecord(
                "entity boundary inside a token", f"characters {start}:{end} do not start and end a token"
            )
        out.append((starts[start], ends[end] + 1))
    return out


def trim_span(text: str, start: int, end: int) -> Optional[CharSpan]:
    """The span without leading / trailing whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


_MARKER = re.compile(r"(</?e[12]>)")
_SPACE_RUN = re.compile(r"\s+")


def parse_markup(marked: str) -> Tuple[str, CharSpan, CharSpan]:
    """Text with `<e1>..</e1>` and `<e2>..</e2>` -> (clean text, e1 span, e2 span).

    Rule: whitespace just inside a marker belongs to the markup (KBP37 and RELX
    write `<e1> x </e1>`, and `<e1> x </e1>-Magazin` means `x-Magazin`); the
    markers are removed, every whitespace run becomes one space and the text
    is stripped. Missing, repeated, unbalanced or empty markup is an invalid
    record."""
    parts = _MARKER.split(marked)  # text, marker, text, marker, ..., text
    for i in range(0, len(parts), 2):
        if i > 0 and not parts[i - 1].startswith("</"):
            parts[i] = parts[i].lstrip()
        if i + 1 < len(parts) and parts[i + 1].startswith("</"):
            parts[i] = parts[i].rstrip()
    opened: Dict[str, int] = {}
    closed: Dict[str, int] = {}
    length = 0
    for i, part in enumerate(parts):
        if i % 2 == 0:
            length += len(part)
            continue
        name = part.strip("</>")
        if part.startswith("</"):
            if name not in opened or name in closed:
                raise InvalidRecord("bad entity markup", f"{part} without a matching <{name}>")
            closed[name] = length
        else:
            if name in opened:
                raise InvalidRecord("bad entity markup", f"<{name}> appears twice")
            opened[name] = length
    for name in ("e1", "e2"):
        if name not in opened or name not in closed:
            raise InvalidRecord("bad entity markup", f"<{name}>..</{name}> is missing or not closed")
    text, remap = _collapse_whitespace("".join(parts[0::2]))
    spans = []
    for name in ("e1", "e2"):
        span = trim_span(text, remap[opened[name]], remap[closed[name]])
        if span is None:
            raise InvalidRecord("empty entity", f"<{name}></{name}> encloses no text")
        spans.append(span)
    return text, spans[0], spans[1]


def _collapse_whitespace(raw: str) -> Tuple[str, List[int]]:
    """Collapse whitespace runs to one space and strip; map every old offset
    (0..len) to its new offset."""
    remap = [0] * (len(raw) + 1)
    out: List[str] = []
    new = 0
    pos = 0
    lead = True
    for m in _SPACE_RUN.finditer(raw):
        for i in range(pos, m.start()):
            remap[i] = new + (i - pos)
        chunk = raw[pos:m.start()]
        if chunk:
            lead = False
        out.append(chunk)
        new += len(chunk)
        keep = 0 if lead else 1
        for i in range(m.start(), m.end()):
            remap[i] = new
        out.append(" " * keep)
        new += keep
        pos = m.end()
    for i in range(pos, len(raw) + 1):
        remap[i] = new + (i - pos)
    text = "".join(out) + raw[pos:]
    if text.endswith(" "):
        text = text[:-1]
        remap = [min(r, len(text)) for r in remap]
    return text, remap
