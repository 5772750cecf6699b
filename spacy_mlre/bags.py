"""Bags for multi-instance relation extraction (AMNRE): a batcher that keeps
the instances of a bag together, and corpus-level prediction of one relation
distribution per bag. The keys themselves are in bag_keys.py.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .bag_keys import KEY_SOURCES, explicit_keys, pair_bag_keys, set_pair_bag_keys
from .pipeline.candidates import get_entities

__all__ = ["KEY_SOURCES", "explicit_keys", "pair_bag_keys", "set_pair_bag_keys"]


def doc_bag_keys(doc: Doc, sources: Sequence[str] = KEY_SOURCES, spans_key: Optional[str] = None) -> List[str]:
    """Keys of every ordered pair of the doc's entities (a superset of the candidates)."""
    ents = get_entities(doc, spans_key)
    if "relation" in sources:
        ents_set = {(e.start, e.end) for e in ents}
        extra = [k for k in explicit_keys(doc) if (k[0], k[1]) not in ents_set or (k[2], k[3]) not in ents_set]
    else:
        extra = []
    pairs = [(h.start, h.end, t.start, t.end) for h in ents for t in ents if (h.start, h.end) != (t.start, t.end)]
    return pair_bag_keys(doc, pairs + extra, sources)


def group_docs(key_lists: Sequence[Sequence[str]]) -> List[List[int]]:
    """Connected components of docs that share a bag key, each in corpus order,
    ordered by their first doc: the smallest doc groups that never split a bag."""
    parent = list(range(len(key_lists)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: Dict[str, int] = {}
    for i, keys in enumerate(key_lists):
        for key in keys:
            j = owner.setdefault(key, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    comps: Dict[int, List[int]] = defaultdict(list)
    for i in range(len(key_lists)):
        comps[find(i)].append(i)
    return [comps[r] for r in sorted(comps)]


def pack_groups(groups: Sequence[List[int]], size: int) -> List[List[int]]:
    """Pack doc groups into batches of at most `size` docs; a bigger group is a batch of its own."""
    batches: List[List[int]] = []
    current: List[int] = []
    for group in groups:
        if current and len(current) + len(group) > size:
            batches.append(current)
            current = []
        current = current + group
        if len(current) >= size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


@registry.batchers("spacy_mlre.bag_batcher.v1")
def configure_bag_batcher(
    size: int = 32,
    key_sources: Sequence[str] = KEY_SOURCES,
    spans_key: Optional[str] = None,
) -> Callable[[Iterable[Example]], Iterator[List[Example]]]:
    """Batches of about `size` docs that never split a bag: all docs sharing a bag
    key (computed on the gold side) land in one batch. The explicit ids of the
    gold relations are copied to the predicted docs, where the model reads them.
    The whole stream is read before the first batch (bags span the corpus)."""
    sources = tuple(key_sources)

    def batcher(examples: Iterable[Example]) -> Iterator[List[Example]]:
        examples = list(examples)
        key_lists = []
        for eg in examples:
            if "relation" in sources:
                ref_keys = explicit_keys(eg.reference)
                if ref_keys and len(eg.predicted) == len(eg.reference):
                    set_pair_bag_keys(eg.predicted, ref_keys)
            key_lists.append(doc_bag_keys(eg.reference, sources, spans_key))
        for batch in pack_groups(group_docs(key_lists), size):
            yield [examples[i] for i in batch]

    return batcher


@dataclass
class BagPrediction:
    """One bag: its key, p(r|T) per label (normalised over the labels and the
    no-relation class), the unnormalised product of Eq. 11 used for ranking, and
    its members as (doc index, head start, head end, tail start, tail end)."""

    key: str
    scores: Dict[str, float]
    no_relation: float
    raw: Dict[str, float]
    members: List[Tuple[int, int, int, int, int]] = field(default_factory=list)
    langs: List[str] = field(default_factory=list)


def _get_pipe(nlp_or_pipe: Any, name: Optional[str]) -> Any:
    if hasattr(nlp_or_pipe, "get_pipe"):
        if name is None:
            names = [n for n, p in nlp_or_pipe.pipeline if getattr(getattr(p, "model", None), "name", "") == "amnre"]
            if not names:
                raise ValueError("No pipe with a bag-level model (spacy_mlre.AMNRE.v1) in the pipeline.")
            name = names[0]
        return nlp_or_pipe.get_pipe(name)
    return nlp_or_pipe


def predict_bags(
    nlp_or_pipe: Any,
    docs: Sequence[Doc],
    *,
    key_sources: Sequence[str] = KEY_SOURCES,
    batch_size: int = 64,
    name: Optional[str] = None,
) -> List[BagPrediction]:
    """One relation distribution per bag over a corpus: all candidate pairs of
    `docs` (with entities set) that share a key are one bag, whatever doc and
    language they come from, scored together by the model's selective attention
    with every relation as the query (the paper's test procedure)."""
    from .language import get_lang
    from .ml.models.amnre import bag_log_probs

    pipe = _get_pipe(nlp_or_pipe, name)
    docs = list(docs)
    labels = list(pipe.labels)
    key_lists = []
    for doc in docs:
        cands = pipe.get_candidates([doc])
        pairs = [(*cands.spans[h], *cands.spans[t]) for h, t in cands.pairs.tolist()]
        key_lists.append(pair_bag_keys(doc, pairs, key_sources))
    out: List[BagPrediction] = []
    for batch in pack_groups(group_docs(key_lists), batch_size):
        batch_docs = [docs[i] for i in batch]
        cands = pipe.get_candidates(batch_docs)
        if cands.n_pairs == 0:
            continue
        keys = [k for i in batch for k in key_lists[i]]
        bag_keys, log_probs = bag_log_probs(pipe.model, batch_docs, cands, keys)
        log_probs = numpy.asarray(log_probs, dtype="float64")
        shifted = numpy.exp(log_probs - log_probs.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        index = {key: b for b, key in enumerate(bag_keys)}
        preds = [BagPrediction(key, {l: float(probs[b, j]) for j, l in enumerate(labels)}, float(probs[b, -1]),
                               {l: float(numpy.exp(log_probs[b, j])) for j, l in enumerate(labels)})
                 for b, key in enumerate(bag_keys)]
        pair_doc = cands.pair_doc
        for p, (key, (h, t)) in enumerate(zip(keys, cands.pairs.tolist())):
            doc_i = batch[int(pair_doc[p])]
            bag = preds[index[key]]
            bag.members.append((doc_i, *map(int, cands.spans[h]), *map(int, cands.spans[t])))
            lang = get_lang(docs[doc_i])
            if lang not in bag.langs:
                bag.langs.append(lang)
        out.extend(preds)
    return out
