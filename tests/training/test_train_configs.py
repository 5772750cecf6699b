"""The shipped configs train with spaCy's own CLI, and trained pipelines load
in a process that never imports spacy_mlre (entry points do the work)."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from mlre_testing import LOAD_SCRIPT, ROOT

CONFIGS = ROOT / "configs"


def _train(config, corpus, out, *overrides):
    cmd = [sys.executable, "-m", "spacy", "train", str(CONFIGS / config), "--output", str(out),
           "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"), *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result




@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.cfg")))
def test_single_label_configs_do_not_label_every_pair(config):
    """A single-label pipe predicts its most probable label where that label
    reaches its threshold (decode_labels): at 0 every candidate pair would get
    a relation, which the marker configs did after that rule came in."""
    from spacy.util import load_config

    for name, component in load_config(CONFIGS / config, interpolate=False)["components"].items():
        if component.get("factory") == "relation_extractor" and component.get("multi_label") is False:
            assert component["threshold"] > 0, f"{config}: [components.{name}] threshold"


def test_spacy_train_pair_tok2vec_and_load_without_import(tiny_corpus, tmp_path):
    result = _train("pair_tok2vec.cfg", tiny_corpus, tmp_path / "out",
                    "--training.max_steps", "60", "--training.eval_frequency", "20")
    assert "REL_MICRO_F" in result.stdout
    meta = json.loads((tmp_path / "out" / "model-best" / "meta.json").read_text())
    assert meta["performance"]["rel_micro_f"] > 0.9
    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "out" / "model-best")],
                          capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[-3000:]
    assert sorted(map(tuple, json.loads(load.stdout))) == [("Acme", "employs", "Zofia"), ("Zofia", "works_for", "Acme")]


def test_spacy_evaluate_with_entities_from_upstream(tiny_corpus, tmp_path):
    """`spacy evaluate` gives the pipeline raw text: the relation extractor then
    works on the entities an upstream component predicts (here an entity_ruler)."""
    _train("pair_tok2vec.cfg", tiny_corpus, tmp_path / "out", "--training.max_steps", "60", "--training.eval_frequency", "20")
    nlp = spacy.load(tmp_path / "out" / "model-best")
    ruler = nlp.add_pipe("entity_ruler", before="relation_extractor")
    ruler.add_patterns([{"label": "PER", "pattern": p} for p in ["Alice", "Bob", "Dieter", "Zofia", "Émile"]]
                       + [{"label": "ORG", "pattern": o} for o in ["Acme", "Siemens", "Orlen", "Renault"]])
    nlp.to_disk(tmp_path / "with-ruler")
    metrics = tmp_path / "metrics.json"
    cmd = [sys.executable, "-m", "spacy", "evaluate", str(tmp_path / "with-ruler"),
           str(tiny_corpus / "dev.spacy"), "--output", str(metrics)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(metrics.read_text())
    assert scores["ents_f"] == 1.0
    assert scores["rel_micro_f"] > 0.9
    assert set(scores["rel_f_per_lang"]) == {"en", "de", "pl"}


def test_pair_classifier_with_tiny_bert(tiny_corpus, tiny_bert, tmp_path):
    _train("pair_trf.cfg", tiny_corpus, tmp_path / "out",
           "--paths.transformer", str(tiny_bert), "--training.max_steps", "40", "--training.eval_frequency", "20",
           "--training.optimizer.learn_rate.initial_rate", "0.001", "--training.optimizer.learn_rate.warmup_steps", "5",
           "--training.optimizer.learn_rate.total_steps", "40")
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.pipe_names == ["transformer", "relation_extractor"]
    from spacy_mlre.corpus.reader import create_relation_corpus_reader

    examples = list(create_relation_corpus_reader(tiny_corpus / "train.spacy")(nlp))
    scores = nlp.evaluate(examples)
    # a 2-layer random BERT learns this toy pattern (direction from word order)
    assert scores["rel_micro_f"] > 0.9, scores
