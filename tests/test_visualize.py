import re

from spacy.tokens import DocBin, Span
from typer.testing import CliRunner

from spacy_mlre import Relation
from spacy_mlre.visualize import relation_parse, render_relations

from mlre_testing import make_doc


def _newsroom(nlp):
    return make_doc(nlp, "The New York Times hired Maggie Haberman in 2015 .",
                    [(4, 18, "ORG"), (25, 40, "PER"), (44, 48, "DATE")],
                    [(0, 1, "employs"), (1, 0, "works_for")], "en")


def _check_indices(parse):
    n = len(parse["words"])
    for arc in parse["arcs"]:
        assert 0 <= arc["start"] < arc["end"] < n, arc
        assert arc["dir"] in ("left", "right"), arc


def test_multi_word_entities_are_one_unit_each(nlp):
    parse = relation_parse(_newsroom(nlp))
    assert parse["words"] == [
        {"text": "The", "tag": ""},
        {"text": "New York Times", "tag": "ORG"},
        {"text": "hired", "tag": ""},
        {"text": "Maggie Haberman", "tag": "PER"},
        {"text": "in", "tag": ""},
        {"text": "2015", "tag": "DATE"},
        {"text": ".", "tag": ""},
    ]
    # relations in stored order (by head offsets): Times -> Haberman, then
    # Haberman -> Times, the later entity pointing back to the earlier one
    assert parse["arcs"] == [
        {"start": 1, "end": 3, "label": "employs", "dir": "right"},
        {"start": 1, "end": 3, "label": "works_for", "dir": "left"},
    ]
    _check_indices(parse)


def test_arcs_join_whole_entities_with_direction(nlp):
    doc = make_doc(nlp, "Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(1, 0, "employs")])
    parse = relation_parse(doc)
    assert [w["text"] for w in parse["words"]] == ["Alice", "works", "for", "Acme", "."]
    assert parse["arcs"] == [{"start": 0, "end": 3, "label": "employs", "dir": "left"}]


def test_doc_without_relations_or_entities(nlp):
    doc = make_doc(nlp, "Acme  is in Paris .", [(0, 4, "ORG"), (12, 17, "LOC")], [])
    parse = relation_parse(doc)
    # the double space is a whitespace token: no blank column for it
    assert parse["words"] == [{"text": "Acme", "tag": "ORG"}, {"text": "is", "tag": ""}, {"text": "in", "tag": ""},
                              {"text": "Paris", "tag": "LOC"}, {"text": ".", "tag": ""}]
    assert parse["arcs"] == []
    plain = nlp.make_doc("Nothing here .")
    assert relation_parse(plain) == {"words": [{"text": w, "tag": ""} for w in ("Nothing", "here", ".")],
                                     "arcs": [], "title": None}
    html = render_relations([doc, plain])
    assert ">Paris</tspan>" in html and ">Nothing</tspan>" in html


def test_overlapping_entities_anchor_on_the_containing_word(nlp):
    doc = nlp.make_doc("The New York Times reports from Berlin .")
    times, city, berlin = Span(doc, 1, 4, "ORG"), Span(doc, 1, 3, "LOC"), Span(doc, 6, 7, "LOC")
    doc._.relations = [Relation(city, berlin, "far_from"), Relation(times, berlin, "reports_from")]
    parse = relation_parse(doc)
    assert parse["words"][:2] == [{"text": "The", "tag": ""}, {"text": "New York Times", "tag": "ORG / LOC"}]
    assert parse["arcs"] == [{"start": 1, "end": 4, "label": "far_from", "dir": "right"},
                             {"start": 1, "end": 4, "label": "reports_from", "dir": "right"}]


def test_span_group_overlaps_and_relations_inside_one_unit(nlp):
    # "University of Paris Saclay" (ORG) overlaps "Paris Saclay" (LOC), which
    # partly overlaps "Saclay campus" (FAC): one chain, one unit. None of these
    # is in doc.ents; the relations' spans come from the span group.
    doc = nlp.make_doc("Ada studied at University of Paris Saclay campus in France .")
    ada, uni, paris, campus, france = (Span(doc, 0, 1, "PER"), Span(doc, 3, 7, "ORG"), Span(doc, 5, 7, "LOC"),
                                       Span(doc, 6, 8, "FAC"), Span(doc, 9, 10, "LOC"))
    doc.ents = [ada]
    doc.spans["entities"] = [ada, uni, paris, campus, france]
    doc._.relations = [
        Relation(ada, uni, "educated_at"),
        Relation(campus, ada, "alumnus"),        # from the unit back to Ada
        Relation(paris, uni, "part_of"),         # head and tail in one unit: no arc
        Relation(uni, campus, "located_at"),     # head and tail overlap: no arc
        Relation(paris, france, "located_in"),
        Relation(campus, france, "located_in"),  # same arc as the one above: drawn once
    ]
    parse = relation_parse(doc)
    assert parse["words"] == [
        {"text": "Ada", "tag": "PER"},
        {"text": "studied", "tag": ""},
        {"text": "at", "tag": ""},
        {"text": "University of Paris Saclay campus", "tag": "ORG / LOC / FAC"},
        {"text": "in", "tag": ""},
        {"text": "France", "tag": "LOC"},
        {"text": ".", "tag": ""},
    ]
    assert parse["arcs"] == [
        {"start": 0, "end": 3, "label": "educated_at", "dir": "right"},
        {"start": 3, "end": 5, "label": "located_in", "dir": "right"},
        {"start": 0, "end": 3, "label": "alumnus", "dir": "left"},
    ]
    _check_indices(parse)
    # without the span group, an entity with no relation and not in doc.ents is
    # not drawn: here every span has a relation, so the units are the same
    assert relation_parse(doc, spans_key="entities")["words"] == parse["words"]
    doc._.relations = []
    assert [w["text"] for w in relation_parse(doc)["words"]][3:5] == ["University", "of"]
    assert relation_parse(doc, spans_key="entities")["words"][3]["text"] == "University of Paris Saclay campus"
    assert "University of Paris Saclay campus" in render_relations(doc, spans_key="entities")


def test_rendered_svg_draws_each_entity_once_as_a_unit(nlp):
    doc = _newsroom(nlp)
    doc._.doc_id = "news<1>"
    html = render_relations(doc)
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 1
    words = re.findall(r'class="displacy-word"[^>]*>([^<]*)</tspan>', html)
    tags = re.findall(r'class="displacy-tag"[^>]*>([^<]*)</tspan>', html)
    labels = re.findall(r'class="displacy-label"[^>]*>([^<]*)</textPath>', html)
    assert words == ["The", "New York Times", "hired", "Maggie Haberman", "in", "2015", "."]
    assert tags == ["", "ORG", "", "PER", "", "DATE", ""]
    assert labels == ["employs", "works_for"]
    for text in ("New York Times", "Maggie Haberman"):
        assert html.count(text) == 1, text
    for token in ("York", "Maggie"):
        assert f">{token}</tspan>" not in html
    assert "news&lt;1&gt;" in html  # the title is escaped
    # these units fit the default columns (offset 60 + 7 units * 140); a long
    # entity widens them so that it does not run into its neighbours
    assert re.search(r'<svg[^>]*width="(\d+)"', html).group(1) == "1040"
    long = make_doc(nlp, "She is at Massachusetts Institute of Technology now .", [(10, 47, "ORG")], [])
    width = int(re.search(r'<svg[^>]*width="(\d+)"', render_relations(long)).group(1))
    assert width == 60 + 6 * int((9 * 37 + 9 * len("now")) / 2 + 20)  # its widest pair of neighbours
    embedded = render_relations([doc, doc], page=False, options={"distance": 100, "offset_x": 50})
    assert embedded.count("<svg") == 2 and 'width="750"' in embedded and "<!DOCTYPE" not in embedded


def test_render_non_latin_doc_has_every_label_and_entity(nlp):
    doc = make_doc(nlp, "Иван Петров работает в Газпроме в Москве .",
                   [(0, 11, "PER"), (23, 31, "ORG"), (34, 40, "LOC")],
                   [(0, 1, "работодатель"), (1, 2, "находится_в")], "ru")
    html = render_relations(doc)
    for text in ("Иван Петров", "Газпроме", "Москве", "работодатель", "находится_в", "PER", "ORG", "LOC"):
        assert text in html, text


def test_labels_are_escaped(nlp):
    doc = make_doc(nlp, "A owns B .", [(0, 1, "X&Y"), (7, 8, "Z")], [(0, 1, "part<of")])
    html = render_relations(doc)
    assert "part&lt;of" in html and "X&amp;Y" in html and "part<of" not in html


def test_render_cli_writes_gold_diagrams(nlp, tmp_path):
    from spacy_mlre.cli import _load_commands, app

    doc = _newsroom(nlp)
    DocBin(store_user_data=True, docs=[doc]).to_disk(tmp_path / "dev.spacy")
    out = tmp_path / "relations.html"
    _load_commands()
    result = CliRunner().invoke(app, ["render", str(tmp_path / "dev.spacy"), str(out), "--spans-key", "entities"])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf8")
    assert html.count("New York Times") == 1 and "works_for" in html and "employs" in html
