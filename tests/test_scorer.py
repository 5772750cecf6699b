import pytest
from spacy.training import Example

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.scorer import score_relations

from mlre_testing import make_doc


def _example(nlp, gold_rels, pred_rels, lang="en"):
    text = "Alice works for Acme in Paris ."
    ents = [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")]
    ref = make_doc(nlp, text, ents, gold_rels, lang)
    pred = make_input_doc(ref)
    pred._.relations = [Relation(pred.ents[h], pred.ents[t], label) for h, t, label in pred_rels]
    return Example(pred, ref)


def test_hand_computed_scores(nlp):
    egs = [
        # gold: works_for(A->Acme), located_in(Acme->Paris), based_in(A->Paris)
        # pred: works_for right, located_in in the wrong direction, based_in missed
        _example(nlp, [(0, 1, "works_for"), (1, 2, "located_in"), (0, 2, "based_in")],
                 [(0, 1, "works_for"), (2, 1, "located_in")]),
        # German doc: one right, one spurious
        _example(nlp, [(0, 1, "works_for")], [(0, 1, "works_for"), (0, 2, "works_for")], lang="de"),
    ]
    scores = score_relations(egs)
    # tp=2 (works_for x2), fp=2 (reversed located_in, spurious works_for), fn=2 (located_in, based_in)
    assert scores["rel_micro_p"] == pytest.approx(0.5)
    assert scores["rel_micro_r"] == pytest.approx(0.5)
    assert scores["rel_micro_f"] == pytest.approx(0.5)
    per_label = scores["rel_f_per_label"]
    assert per_label["works_for"]["p"] == pytest.approx(2 / 3)
    assert per_label["works_for"]["r"] == pytest.approx(1.0)
    assert per_label["located_in"]["f"] == pytest.approx(0.0)
    assert per_label["based_in"]["r"] == pytest.approx(0.0)
    assert scores["rel_macro_f"] == pytest.approx((0.8 + 0.0 + 0.0) / 3)
    assert scores["rel_f_per_lang"]["en"]["p"] == pytest.approx(0.5)
    assert scores["rel_f_per_lang"]["en"]["r"] == pytest.approx(1 / 3)
    assert scores["rel_f_per_lang"]["de"]["p"] == pytest.approx(0.5)
    assert scores["rel_f_per_lang"]["de"]["r"] == pytest.approx(1.0)


def test_gold_outside_candidates_is_a_false_negative(nlp):
    # A gold relation between a real entity and a span no NER found: it can never
    # be a candidate, and it must still count as a miss.
    ref = nlp.make_doc("Alice works for Acme in Paris .")
    ref.ents = [ref.char_span(0, 5, "PER"), ref.char_span(16, 20, "ORG"), ref.char_span(24, 29, "LOC")]
    ref._.relations = [Relation(ref.ents[0], ref.ents[1], "works_for"), Relation(ref.ents[1], ref.ents[2], "located_in")]
    pred = make_input_doc(ref, gold_ents=False)
    pred.ents = [pred.char_span(0, 5, "PER"), pred.char_span(16, 20, "ORG")]
    pred._.relations = [Relation(pred.ents[0], pred.ents[1], "works_for")]
    scores = score_relations([Example(pred, ref)])
    assert scores["rel_micro_p"] == pytest.approx(1.0)
    assert scores["rel_micro_r"] == pytest.approx(0.5)


def test_label_filter_and_empty(nlp):
    eg = _example(nlp, [(0, 1, "works_for"), (1, 2, "Other")], [(0, 1, "works_for"), (1, 2, "Other")])
    scores = score_relations([eg], labels=["works_for"])
    assert list(scores["rel_f_per_label"]) == ["works_for"]
    assert scores["rel_micro_f"] == pytest.approx(1.0)
    empty = score_relations([_example(nlp, [], [])])
    assert empty["rel_micro_f"] == 0.0 and empty["rel_macro_f"] == 0.0
