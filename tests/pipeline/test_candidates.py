import numpy
import spacy
from spacy.tokens import Doc, Span

from spacy_mlre.pipeline.candidates import build_candidates, get_entities


def _doc(words, ents, sent_starts=None):
    nlp = spacy.blank("xx")
    doc = Doc(nlp.vocab, words=words, sent_starts=sent_starts)
    doc.ents = [Span(doc, s, e, label=l) for s, e, l in ents]
    return doc


def test_ordered_pairs_both_directions():
    doc = _doc(["A", "x", "B", "y", "C"], [(0, 1, "P"), (2, 3, "O"), (4, 5, "L")])
    c = build_candidates([doc], [get_entities(doc)])
    assert c.pairs.tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert c.spans.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_distance_limit_counts_tokens_between():
    words = ["A"] + ["x"] * 5 + ["B"] + ["y"] * 2 + ["C"]
    doc = _doc(words, [(0, 1, "P"), (6, 7, "O"), (9, 10, "L")])
    c = build_candidates([doc], [get_entities(doc)], max_distance=2)
    # A-B: 5 tokens between, B-C: 2, A-C: 8
    assert c.pairs.tolist() == [[1, 2], [2, 1]]
    assert build_candidates([doc], [get_entities(doc)], max_distance=0).n_pairs == 0


def test_same_sentence_and_batch_offsets():
    doc1 = _doc(["A", "B", ".", "C", "D"], [(0, 1, "P"), (1, 2, "P"), (3, 4, "P"), (4, 5, "P")],
                sent_starts=[True, False, False, True, False])
    doc2 = _doc(["E", "F"], [(0, 1, "P"), (1, 2, "P")])  # no sentence annotation: one sentence
    c = build_candidates([doc1, doc2], [get_entities(doc1), get_entities(doc2)], same_sentence=True)
    assert c.pair_lengths.tolist() == [4, 2]
    assert c.pairs.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2], [4, 5], [5, 4]]
    assert c.pair_doc.tolist() == [0, 0, 0, 0, 1, 1]
    assert c.global_spans([5, 2])[4:].tolist() == [[5, 6], [6, 7]]


def test_type_constraints():
    doc = _doc(["A", "B", "C"], [(0, 1, "PER"), (1, 2, "ORG"), (2, 3, "LOC")])
    c = build_candidates([doc], [get_entities(doc)], allowed_types={("PER", "ORG"), ("ORG", "LOC")})
    assert c.pairs.tolist() == [[0, 1], [1, 2]]


def test_span_group_overlaps_and_duplicates():
    nlp = spacy.blank("xx")
    doc = Doc(nlp.vocab, words=["New", "York", "Times", "reports"])
    doc.spans["entities"] = [Span(doc, 0, 3, "ORG"), Span(doc, 0, 2, "LOC"), Span(doc, 0, 2, "GPE")]
    ents = get_entities(doc, "entities")
    assert [(e.start, e.end, e.label_) for e in ents] == [(0, 2, "GPE"), (0, 3, "ORG")]
    c = build_candidates([doc], [ents])
    assert c.pairs.tolist() == [[0, 1], [1, 0]]


def test_empty_inputs():
    nlp = spacy.blank("xx")
    empty = Doc(nlp.vocab, words=[])
    one = _doc(["A"], [(0, 1, "P")])
    c = build_candidates([empty, one], [[], get_entities(one)])
    assert c.n_pairs == 0 and c.pair_lengths.tolist() == [0, 0] and c.ent_lengths.tolist() == [0, 1]
    assert build_candidates([], []).n_pairs == 0
