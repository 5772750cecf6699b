"""Relation scores for `spacy train` / `spacy evaluate`.

A predicted relation is right when head span, tail span (exact token
boundaries), label and direction all match a gold relation. Gold relations the
pipe never considered (no candidate pair, entity missed upstream) are false
negatives like any other miss.
"""
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Set

import numpy
from spacy.scorer import PRFScore
from spacy.training import Example
from spacy.util import registry

from .language import get_lang
from .relations import RelationKey, relation_keys


def _prf(score: PRFScore) -> Dict[str, float]:
    return {"p": score.precision, "r": score.recall, "f": score.fscore}


def predicted_keys_in_reference(eg: Example) -> Set[RelationKey]:
    """Predicted relations in the reference doc's token offsets.

    Usually the two docs share tokens; otherwise spans are mapped by character
    offsets, and a span with no exact counterpart stays unmatched (a false
    positive), never dropped.
    """
    keys = relation_keys(eg.predicted)
    x, y = eg.predicted, eg.reference
    if not keys or (len(x) == len(y) and numpy.array_equal(x.to_array("ORTH"), y.to_array("ORTH"))):
        return set(keys)
    out = set()
    for hs, he, ts, te, label in keys:
        head = y.char_span(x[hs].idx, x[he - 1].idx + len(x[he - 1]))
        tail = y.char_span(x[ts].idx, x[te - 1].idx + len(x[te - 1]))
        if head is None or tail is None:
            out.add((-1 - hs, -1 - he, -1 - ts, -1 - te, label))  # matches no gold
        else:
            out.add((head.start, head.end, tail.start, tail.end, label))
    return out


def score_relations(examples: Iterable[Example], *, labels: Optional[List[str]] = None, **kwargs: Any) -> Dict[str, Any]:
    """Micro P/R/F, macro F over labels, and P/R/F per label and per language.

    labels: only score these labels (e.g. SemEval's 9 relations without
        direction-less extras); by default every label seen in gold or predictions.
    Macro F is the mean F over those labels.
    """
    per_label: Dict[str, PRFScore] = defaultdict(PRFScore)
    per_lang: Dict[str, PRFScore] = defaultdict(PRFScore)
    micro = PRFScore()
    keep = set(labels) if labels is not None else None
    for eg in examples:
        gold = set(relation_keys(eg.reference))
        pred = predicted_keys_in_reference(eg)
        if keep is not None:
            gold = {k for k in gold if k[4] in keep}
            pred = {k for k in pred if k[4] in keep}
        lang = get_lang(eg.reference)
        for bucket, keys in (("tp", gold & pred), ("fp", pred - gold), ("fn", gold - pred)):
            for key in keys:
                setattr(per_label[key[4]], bucket, getattr(per_label[key[4]], bucket) + 1)
            n = len(keys)
            setattr(micro, bucket, getattr(micro, bucket) + n)
            setattr(per_lang[lang], bucket, getattr(per_lang[lang], bucket) + n)
    scored = sorted(keep) if keep is not None else sorted(per_label)
    macro = float(numpy.mean([per_label[label].fscore for label in scored])) if scored else 0.0
    return {
        "rel_micro_p": micro.precision,
        "rel_micro_r": micro.recall,
        "rel_micro_f": micro.fscore,
        "rel_macro_f": macro,
        "rel_f_per_label": {label: _prf(per_label[label]) for label in scored},
        "rel_f_per_lang": {lang: _prf(score) for lang, score in sorted(per_lang.items())},
    }


@registry.scorers("spacy_mlre.relation_scorer.v1")
def make_relation_scorer():
    return score_relations
