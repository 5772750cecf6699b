import pytest
from spacy.training import Example

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.metrics.semeval import semeval_scores

from mlre_testing import make_doc

TEXT = "The engine of the car ."
ENTS = [(4, 10, "ENT"), (18, 21, "ENT")]


def _eg(nlp, gold, preds):
    """gold: (label, head index) or None for Other; preds: (label, head index, score)."""
    ref = make_doc(nlp, TEXT, ENTS, [] if gold is None else [(gold[1], 1 - gold[1], gold[0])])
    pred = make_input_doc(ref)
    pred._.relations = [Relation(pred.ents[h], pred.ents[1 - h], label, score) for label, h, score in preds]
    return Example(pred, ref)


def test_official_macro_f1_hand_computed(nlp):
    egs = [
        _eg(nlp, ("Component-Whole", 0), [("Component-Whole", 0, 0.9)]),  # right
        _eg(nlp, ("Component-Whole", 0), [("Component-Whole", 1, 0.8)]),  # wrong direction
        _eg(nlp, ("Cause-Effect", 1), [("Cause-Effect", 1, 0.6), ("Component-Whole", 0, 0.4)]),  # best one right
        _eg(nlp, None, [("Cause-Effect", 0, 0.7)]),  # Other answered as a relation
        _eg(nlp, ("Cause-Effect", 0), []),  # missed: answered Other
    ]
    s = semeval_scores(egs)
    cw, ce = s["semeval_per_relation"]["Component-Whole"], s["semeval_per_relation"]["Cause-Effect"]
    # Component-Whole: answered 2 (both directions), 1 right, 2 gold
    assert (cw["p"], cw["r"]) == (pytest.approx(0.5), pytest.approx(0.5))
    # Cause-Effect: answered 2, 1 right, gold 2
    assert (ce["p"], ce["r"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert s["semeval_macro_f1"] == pytest.approx(0.5)
    assert s["semeval_n_relations"] == 2
