"""Docs with exactly N entities each, for the scaling and memory checks: the
cost of a relation head follows the entities per doc, which a corpus does not
let one choose."""
from collections import Counter
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy

from ._common import load_docs

# Words of the synthetic docs: a fixed list, so streaming never grows the string store.
LEXICON = (
    "the of and to in a is was for on as with by that it from at his an were are which this be has "
    "also first had its new their one after two been other more they but when into during all she "
    "between some over most can many time there only under year city world group team state about "
    "while where both then three work later known used called part film series number well system "
    "because however since several until former against early music including through each based "
    "became following second national research model data method results paper language network"
).split()


def entity_layout(length: int, n_entities: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Token starts and ends of `n_entities` entities spread evenly over
    `length` tokens: two tokens each where there is room (3 tokens per
    entity), else one; never overlapping."""
    if n_entities == 0:
        return numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64")
    if n_entities > length:
        raise ValueError(f"{n_entities} entities do not fit in {length} tokens.")
    starts = (numpy.arange(n_entities, dtype="int64") * length) // n_entities
    size = 2 if length >= 3 * n_entities else 1
    return starts, starts + size


def text_source(nlp, data: Optional[Path], limit: int = 0) -> Tuple[Optional[List[str]], Optional[List[str]], Optional[str]]:
    """Words (in corpus order), entity labels (one per entity, so cycling them
    keeps the corpus' label frequencies) and the commonest language of DATA."""
    if data is None:
        return None, None, None
    from ...language import LANG_KEY

    words: List[str] = []
    labels: List[str] = []
    langs: Counter = Counter()
    for doc in load_docs(nlp, data, limit):
        words.extend(t.text for t in doc)
        labels.extend(e.label_ for e in doc.ents)
        if LANG_KEY in doc.user_data:
            langs[doc.user_data[LANG_KEY]] += 1
    return words or None, labels or None, (langs.most_common(1)[0][0] if langs else None)


def synthetic_docs(
    nlp,
    n_docs: int,
    n_entities: int,
    words_per_doc: int = 100,
    *,
    words: Optional[Sequence[str]] = None,
    labels: Optional[Sequence[str]] = None,
    lang: Optional[str] = None,
    spans_key: Optional[str] = None,
    seed: int = 0,
) -> List[Any]:
    """`n_docs` docs of max(words_per_doc, n_entities) tokens with exactly
    `n_entities` entities each (laid out by `entity_layout`, so every doc has
    the same candidate pairs). Words are windows of `words` (e.g. a corpus'
    text) or draws from a fixed lexicon; entity labels cycle through `labels`
    ("ENT" by default). Entities go to `doc.ents` and, with `spans_key`, to
    that span group too."""
    from spacy.tokens import Doc, Span

    from ...language import LANG_KEY

    rng = numpy.random.default_rng(seed)
    length = max(words_per_doc, n_entities, 1)
    starts, ends = entity_layout(length, n_entities)
    labels = list(labels) if labels else ["ENT"]
    docs = []
    for i in range(n_docs):
        if words:
            offset = int(rng.integers(0, max(1, len(words) - length)))
            toks = [words[(offset + j) % len(words)] for j in range(length)]
        else:
            toks = [LEXICON[j] for j in rng.integers(0, len(LEXICON), length)]
        doc = Doc(nlp.vocab, words=toks)
        ents = [Span(doc, int(s), int(e), label=labels[(i * n_entities + k) % len(labels)]) for k, (s, e) in enumerate(zip(starts, ends))]
        doc.ents = ents
        if spans_key:
            doc.spans[spans_key] = ents
        if lang:
            doc.user_data[LANG_KEY] = lang
        docs.append(doc)
    return docs
