"""The joint metric (mERE): triple, entity-pair, relation, head and tail F1
on hand-counted cases, per language; the router heatmap of the evaluate command."""
import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Config

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.metrics import get_metric

from mlre_testing import make_doc


def _predicted(reference, rels):
    doc = make_input_doc(reference)
    doc._.relations = [Relation(doc[hs:he], doc[ts:te], label) for hs, he, ts, te, label in rels]
    return doc


def test_joint_scores_hand_counted(nlp):
    # tokens: Alice(0) works(1) for(2) Acme(3) in(4) Paris(5) .(6)
    en = make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")],
                  [(0, 1, "works_for"), (1, 2, "located_in")], "en")
    # tokens: Zofia(0) pracuje(1) w(2) Orlen(3) .(4)
    pl = make_doc(nlp, "Zofia pracuje w Orlen .", [(0, 5, "PER"), (16, 21, "ORG")], [(0, 1, "works_for")], "pl")
    examples = [
        # right triple; right pair with a wrong label; a spurious triple with a wrong head span
        Example(_predicted(en, [(0, 1, 3, 4, "works_for"), (3, 4, 5, 6, "works_for"), (0, 2, 5, 6, "located_in")]), en),
        Example(_predicted(pl, []), pl),
    ]
    scores = get_metric("joint")(examples)
    # gold triples 3, predicted 3, right 1
    assert scores["joint_triple_p"] == pytest.approx(1 / 3) and scores["joint_triple_r"] == pytest.approx(1 / 3)
    # pairs: gold {A-Acme, Acme-Paris, Z-Orlen}, predicted {A-Acme, Acme-Paris, "Alice works"-Paris}: 2 right
    assert scores["joint_pair_p"] == pytest.approx(2 / 3) and scores["joint_pair_r"] == pytest.approx(2 / 3)
    # relations per doc: en gold {works_for, located_in} = predicted; pl gold {works_for}, none predicted
    assert scores["joint_relation_p"] == pytest.approx(1.0) and scores["joint_relation_r"] == pytest.approx(2 / 3)
    # heads: en gold {Alice, Acme}, predicted {Alice, Acme, "Alice works"}; pl gold {Zofia}
    assert scores["joint_head_p"] == pytest.approx(2 / 3) and scores["joint_head_r"] == pytest.approx(2 / 3)
    # tails: en gold {Acme, Paris}, predicted {Acme, Paris}; pl gold {Orlen}
    assert scores["joint_tail_p"] == pytest.approx(1.0) and scores["joint_tail_r"] == pytest.approx(2 / 3)
    per_lang = scores["joint_per_lang"]
    assert set(per_lang) == {"en", "pl"}
    assert per_lang["pl"]["triple"]["r"] == 0.0 and per_lang["en"]["pair"]["p"] == pytest.approx(2 / 3)


def test_evaluate_writes_joint_table_and_router_heatmap(tmp_path):
    pytest.importorskip("matplotlib")
    from spacy_mlre.cli.evaluate import evaluate_cli

    nlp = spacy.blank("xx")
    model = Config().from_str("""
[model]
@architectures = "spacy_mlre.MERE.v1"
width = 16
[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
width = 16
depth = 1
embed_size = 500
window_size = 1
maxout_pieces = 2
subword_features = true
pretrained_vectors = null
[model.switcher]
@architectures = "spacy_mlre.LanguageSwitcher.v1"
width = 16
hidden_width = 16
module_layers = [1, 2, 2]
top_k = 2
""")["model"]
    nlp.add_pipe("relation_extractor", config={"model": model})
    docs = [
        make_doc(nlp, "Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(0, 1, "works_for")], "en"),
        make_doc(nlp, "Zofia pracuje w Orlen .", [(0, 5, "PER"), (16, 21, "ORG")], [(0, 1, "works_for")], "pl"),
    ]
    examples = [Example(make_input_doc(d), d) for d in docs]
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "model")
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "test.spacy")
    evaluate_cli(str(tmp_path / "model"), tmp_path / "test.spacy", output_dir=tmp_path / "out", metrics="joint",
                 predicted_ents=False, batch_size=8, gpu_id=-1, langs="", labels="", spans_key=None, each=False)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert set(scores["router_probabilities"]) == {"en", "pl", "unseen"}
    assert all(sum(p) == pytest.approx(1.0) for p in scores["router_probabilities"].values())
    assert "| triple |" in (tmp_path / "out" / "scores.md").read_text()
    assert (tmp_path / "out" / "router_heatmap.png").stat().st_size > 0
