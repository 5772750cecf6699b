import json
import os
import subprocess
import sys

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_mlre.cli.evaluate import evaluate_pipeline, scores_markdown
from spacy_mlre.metrics import get_metric


def test_evaluate_cli_writes_json_markdown_and_plot(trained_pipeline, tiny_corpus, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(trained_pipeline), str(tiny_corpus / "dev.spacy"), "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["rel_micro_f"] > 0.9 and scores["n_docs"] == 8
    assert set(scores["rel_f_per_lang"]) == {"en", "de", "pl"}
    md = (out / "scores.md").read_text()
    assert "| rel_micro_f |" in md and "| works_for |" in md and "| pl |" in md
    assert (out / "f1_per_language.png").stat().st_size > 1000


def test_evaluate_cli_reads_several_paths_and_names_a_missing_one(trained_pipeline, tiny_corpus, tmp_path):
    """Two languages' test splits in one evaluation (the workflow's AMNRE step)."""
    data = f"{tiny_corpus / 'dev.spacy'},{tiny_corpus / 'train.spacy'}"
    scores = evaluate_pipeline(str(trained_pipeline), data)
    assert scores["n_docs"] == 8 + len(list(DocBin().from_disk(tiny_corpus / "train.spacy").get_docs(Vocab())))
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(trained_pipeline), f"{tiny_corpus / 'dev.spacy'},{tmp_path / 'no.spacy'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 2 and "no.spacy does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_each_scores_every_file_on_its_own(trained_pipeline, tiny_corpus, tmp_path):
    """One pipeline load for many test sets: a glob, one output folder per file's folder."""
    for lang in ("de", "pl"):
        (tmp_path / "data" / lang).mkdir(parents=True)
        (tmp_path / "data" / lang / "test.spacy").write_bytes((tiny_corpus / "dev.spacy").read_bytes())
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(trained_pipeline), str(tmp_path / "data" / "*" / "test.spacy"),
           "--each", "-o", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    whole = evaluate_pipeline(str(trained_pipeline), tiny_corpus / "dev.spacy")
    for lang in ("de", "pl"):
        scores = json.loads((tmp_path / "out" / lang / "scores.json").read_text())
        assert scores["n_docs"] == 8 and scores["rel_micro_f"] == whole["rel_micro_f"]
    # two files in folders of the same name would overwrite each other's output
    same = f"{tmp_path / 'data' / 'de' / 'test.spacy'},{tiny_corpus / 'dev.spacy'},{tiny_corpus / 'train.spacy'}"
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(trained_pipeline), same, "--each", "-o", str(tmp_path / "o2")]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 2 and f"{tiny_corpus.name} holds several" in result.stderr
    assert not (tmp_path / "o2").exists()


def test_spans_key_reads_entities_that_doc_ents_cannot_hold(trained_pipeline, tiny_corpus, tmp_path):
    """Multi-CrossRE's translations have overlapping entities: doc.ents keeps
    some, the span group all. --spans-key scores a doc.ents model on all of them."""
    import spacy

    nlp = spacy.blank("xx")
    docs = list(DocBin().from_disk(tiny_corpus / "dev.spacy").get_docs(nlp.vocab))
    for doc in docs:
        doc.spans["entities"] = list(doc.ents)
        doc.ents = list(doc.ents)[:1]  # the second entity now lives in the group only
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "overlap.spacy")
    default = evaluate_pipeline(str(trained_pipeline), tmp_path / "overlap.spacy")
    grouped = evaluate_pipeline(str(trained_pipeline), tmp_path / "overlap.spacy", spans_key="entities")
    assert default["rel_micro_r"] == 0.0 and default["spans_key"] is None
    assert grouped["rel_micro_f"] > 0.9 and grouped["spans_key"] == "entities"


def test_predicted_ents_without_ner_finds_nothing(trained_pipeline, tiny_corpus):
    scores = evaluate_pipeline(str(trained_pipeline), tiny_corpus / "dev.spacy", gold_ents=False)
    assert scores["rel_micro_r"] == 0.0  # no upstream NER: no entities, every gold relation missed


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown metric 'nope'. Available: .*semeval"):
        get_metric("nope")


def test_markdown_has_the_overlap_breakdown():
    row = {"p": 0.5, "r": 0.25, "f": 1 / 3, "docs": 4, "gold": 8, "predicted": 4}
    scores = {"rel_micro_f": 0.5, "n_docs": 4, "overlap": {"Normal": row, "EPO": dict(row, docs=1)}}
    md = scores_markdown(scores)
    assert "| Normal | 4 | 8 | 50.00 | 25.00 | 33.33 |" in md
    assert "| EPO | 1 | 8 |" in md
