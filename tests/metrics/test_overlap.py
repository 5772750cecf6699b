import pytest
from spacy.training import Example

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.metrics import get_metric
from spacy_mlre.metrics.overlap import overlap_classes, overlap_scores

from mlre_testing import make_doc

TEXT = "Ernst died in Davos , Switzerland ."
ENTS = [(0, 5, "PER"), (14, 19, "LOC"), (22, 33, "LOC")]  # tokens 0, 3, 5


def _eg(nlp, gold, preds):
    """gold, preds: (head entity index, tail entity index, label)."""
    ref = make_doc(nlp, TEXT, ENTS, gold)
    pred = make_input_doc(ref)
    pred._.relations = [Relation(pred.ents[h], pred.ents[t], label) for h, t, label in preds]
    return Example(pred, ref)


def test_copyre_classes():
    a, b, c = (0, 1), (3, 4), (5, 6)
    key = lambda h, t, label: (*h, *t, label)  # noqa: E731
    assert overlap_classes([]) == {"Normal"}
    assert overlap_classes([key(a, b, "born")]) == {"Normal"}
    assert overlap_classes([key(a, b, "born"), key(a, b, "died")]) == {"EPO"}
    assert overlap_classes([key(a, b, "died"), key(b, c, "in")]) == {"SEO"}
    assert overlap_classes([key(a, b, "born"), key(a, b, "died"), key(b, c, "in")]) == {"EPO", "SEO"}
    # both directions of one pair: not the same ordered pair, but they share entities
    assert overlap_classes([key(a, b, "sibling"), key(b, a, "sibling")]) == {"SEO"}


def test_breakdown_hand_computed(nlp):
    egs = [
        # Normal, Single: right
        _eg(nlp, [(0, 1, "died_in")], [(0, 1, "died_in")]),
        # EPO, Double: one of two labels found, plus a wrong one
        _eg(nlp, [(0, 1, "born_in"), (0, 1, "died_in")], [(0, 1, "died_in"), (1, 2, "in")]),
        # SEO, Double: both found
        _eg(nlp, [(0, 1, "died_in"), (1, 2, "in")], [(0, 1, "died_in"), (1, 2, "in")]),
        # EPO + SEO, Multiple: nothing predicted
        _eg(nlp, [(0, 1, "born_in"), (0, 1, "died_in"), (1, 2, "in")], []),
        # no gold triples: Normal and None; one false positive
        _eg(nlp, [], [(2, 0, "in")]),
    ]
    t = overlap_scores(egs)["overlap"]
    assert (t["Normal"]["gold"], t["Normal"]["predicted"], t["Normal"]["docs"]) == (1, 2, 2)
    assert (t["Normal"]["p"], t["Normal"]["r"]) == (pytest.approx(0.5), pytest.approx(1.0))
    # EPO: docs 2 and 4: tp 1, gold 5, predicted 2
    assert (t["EPO"]["p"], t["EPO"]["r"], t["EPO"]["docs"]) == (pytest.approx(0.5), pytest.approx(0.2), 2)
    # SEO: docs 3 and 4: tp 2, gold 5, predicted 2
    assert (t["SEO"]["p"], t["SEO"]["r"]) == (pytest.approx(1.0), pytest.approx(0.4))
    assert t["SEO"]["f"] == pytest.approx(2 * 0.4 / 1.4)
    assert (t["Single"]["docs"], t["Double"]["docs"], t["Multiple"]["docs"], t["None"]["docs"]) == (1, 2, 1, 1)
    # Double: tp 3, gold 4, predicted 4
    assert (t["Double"]["p"], t["Double"]["r"]) == (pytest.approx(0.75), pytest.approx(0.75))
    assert t["Multiple"]["r"] == 0.0 and t["Multiple"]["predicted"] == 0
    assert t["triples_3"]["docs"] == 1 and "triples_5+" not in t
    # All equals the micro scores over every doc: tp 4, gold 8, predicted 6
    assert (t["All"]["p"], t["All"]["r"]) == (pytest.approx(4 / 6), pytest.approx(0.5))


def test_registered_for_the_evaluate_cli():
    assert get_metric("overlap") is overlap_scores
