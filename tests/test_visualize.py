import spacy
from spacy.tokens import Span

from spacy_mlre import Relation
from spacy_mlre.visualize import relation_parse, render_relations

from mlre_testing import make_doc


def test_render_non_latin_doc_has_every_label_and_entity(nlp):
    doc = make_doc(nlp, "Иван Петров работает в Газпроме в Москве .",
                   [(0, 11, "PER"), (23, 31, "ORG"), (34, 40, "LOC")],
                   [(0, 1, "работодатель"), (1, 2, "находится_в")], "ru")
    html = render_relations(doc)
    for text in ("Иван Петров", "Газпроме", "Москве", "работодатель", "находится_в", "PER", "ORG", "LOC"):
        assert text in html, text


def test_arcs_join_whole_entities_with_direction(nlp):
    doc = make_doc(nlp, "Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(1, 0, "employs")])
    parse = relation_parse(doc)
    assert [w["text"] for w in parse["words"]] == ["Alice", "works", "for", "Acme", "."]
    assert parse["arcs"] == [{"start": 0, "end": 3, "label": "employs", "dir": "left"}]


def test_overlapping_entities_anchor_on_the_containing_word(nlp):
    doc = nlp.make_doc("The New York Times reports from Berlin .")
    times, city, berlin = Span(doc, 1, 4, "ORG"), Span(doc, 1, 3, "LOC"), Span(doc, 6, 7, "LOC")
    doc._.relations = [Relation(city, berlin, "far_from"), Relation(times, berlin, "reports_from")]
    parse = relation_parse(doc)
    assert [w["text"] for w in parse["words"]][:2] == ["The", "New York Times"]
    assert {a["label"] for a in parse["arcs"]} == {"far_from", "reports_from"}
    assert all(a["start"] == 1 and a["end"] == 4 for a in parse["arcs"])
