"""Issue 18, "nothing silent", for the commands: wrong input to tune, evaluate,
benchmark and spacy train stops with a message that says what is missing,
where, and what to do, and a non-zero exit code; never 0.00 scores, a
threshold of 0.05 or a traceback."""
import os
import re
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

from spacy_mlre.cli import _load_commands, app
from spacy_mlre.cli.evaluate import evaluate_pipeline

from mlre_testing import ROOT, make_doc


def _invoke(*args):
    """`python -m spacy_mlre ARGS`, in this process."""
    _load_commands()
    return CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "400"})  # messages unwrapped


def _fails(result, code=1):
    """Ended with `code` and a message, not with an exception's traceback."""
    assert result.exit_code == code, (result.output[-3000:], result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    return " ".join(result.output.split())


def _docbin(path, docs):
    DocBin(store_user_data=True, docs=docs).to_disk(path)
    return path


def _dev_docs(tiny_corpus):
    return list(DocBin().from_disk(tiny_corpus / "dev.spacy").get_docs(Vocab()))


@pytest.fixture(scope="module")
def inputs(tiny_corpus, tmp_path_factory):
    """The dev split without relations, with works_for only, and empty; a pipeline without a relation_extractor."""
    path = tmp_path_factory.mktemp("inputs")
    bare, one_label = _dev_docs(tiny_corpus), _dev_docs(tiny_corpus)
    for doc in bare:
        doc._.relations = []
    for doc in one_label:
        doc._.relations = [r for r in doc._.relations if r.label == "works_for"]
    nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(path / "no_rel")
    return {
        "bare": _docbin(path / "bare.spacy", bare),
        "one_label": _docbin(path / "one_label.spacy", one_label),
        "empty": _docbin(path / "empty.spacy", []),
        "no_rel": path / "no_rel",
    }


# tune (items 1, 9) --------------------------------------------------------------


def test_tune_leaves_labels_without_dev_support_alone_and_says_so(trained_pipeline, inputs, tmp_path):
    """They were all set to the lowest threshold tried (0.05), and exit 0."""
    result = _invoke("tune", trained_pipeline, inputs["one_label"], tmp_path / "tuned")
    assert result.exit_code == 0, (result.output[-3000:], result.exception)
    out = " ".join(result.output.split())
    assert "employs 0.50 (kept: no gold relation in the dev data)" in out
    assert re.search(r"1 of 2 labels have no gold relation in .*one_label\.spacy and keep their threshold: employs", out)
    cfg = spacy.load(tmp_path / "tuned").get_pipe("relation_extractor").cfg
    assert set(cfg["thresholds"]) == {"works_for"}


@pytest.mark.parametrize("grid,said", [("0.1,x", "'x' is not a number"), ("0.2,1.5", "1.5 is not a threshold between 0 and 1")])
def test_tune_with_a_wrong_grid_names_the_entry_and_saves_nothing(trained_pipeline, tiny_corpus, tmp_path, grid, said):
    out = _fails(_invoke("tune", trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "tuned", "--grid", grid))
    assert f"--grid: {said}" in out
    assert not (tmp_path / "tuned").exists()


def test_tune_with_an_unknown_objective_names_the_choices_and_saves_nothing(trained_pipeline, tiny_corpus, tmp_path):
    out = _fails(_invoke("tune", trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "tuned", "--objective", "macro"))
    assert "--objective must be one of label, micro, got 'macro'" in out
    assert not (tmp_path / "tuned").exists()


def test_tune_on_dev_data_without_relations_fails_and_saves_nothing(trained_pipeline, inputs, tmp_path):
    out = _fails(_invoke("tune", trained_pipeline, inputs["bare"], tmp_path / "tuned"))
    assert "No gold relations of the 'relation_extractor' component's labels" in out and "nothing to tune on" in out
    assert not (tmp_path / "tuned").exists()


def test_tune_on_a_pipeline_without_the_extractor_names_its_components(inputs, tiny_corpus, tmp_path):
    """Was a KeyError traceback."""
    out = _fails(_invoke("tune", inputs["no_rel"], tiny_corpus / "dev.spacy", tmp_path / "tuned"))
    assert f"The pipeline {inputs['no_rel']} has no component 'relation_extractor'; its components are ['sentencizer']" in out


# evaluate (items 2, 3, 9) -----------------------------------------------------------


def test_evaluate_on_data_without_gold_relations_fails(trained_pipeline, inputs):
    """Printed 0.00 everywhere and exited 0. Run as a command, for the exit code and stderr."""
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(trained_pipeline), str(inputs["bare"])]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"No gold relations in the 8 docs of {inputs['bare']}: every score would be 0.00" in " ".join(result.stdout.split())


def test_evaluate_on_an_empty_docbin_fails(trained_pipeline, inputs):
    out = _fails(_invoke("evaluate", trained_pipeline, inputs["empty"]))
    assert f"The relation corpus {inputs['empty']} holds no docs" in out


def test_evaluate_with_langs_that_match_no_doc_fails(trained_pipeline, tiny_corpus):
    out = _fails(_invoke("evaluate", trained_pipeline, tiny_corpus / "dev.spacy", "--langs", "fr"))
    assert "passed the reader's filters: 8 not in langs = ['fr'] (their languages: de (3), en (3), pl (2))" in out


def test_evaluate_a_pipeline_without_the_extractor_fails(inputs, tiny_corpus):
    out = _fails(_invoke("evaluate", inputs["no_rel"], tiny_corpus / "dev.spacy"))
    assert f"The pipeline {inputs['no_rel']} has no relation_extractor component; its components are ['sentencizer']" in out


def test_evaluate_with_labels_nobody_has_fails(trained_pipeline, tiny_corpus):
    out = _fails(_invoke("evaluate", trained_pipeline, tiny_corpus / "dev.spacy", "--labels", "work_for"))
    assert "--labels ['work_for']: neither the pipeline (" in out and "Check their spelling" in out


def test_unknown_metric_fails_before_anything_loads(tiny_corpus):
    """Was a traceback after the whole prediction run, with nothing written.
    The pipeline named here does not exist: the metric is checked first."""
    with pytest.raises(ValueError, match=r"Unknown metric 'f1'. Available: bags, joint, language_probe, overlap, semeval\. "
                                         r"The relation scores .* are always computed"):
        evaluate_pipeline("no/such/pipeline", tiny_corpus / "dev.spacy", metrics=["semeval", "f1"])
    out = _fails(_invoke("evaluate", "no/such/pipeline", tiny_corpus / "dev.spacy", "--metrics", "f1"), code=2)
    assert "Invalid value for '--metrics': Unknown metric 'f1'. Available: bags, joint, language_probe" in out


def test_evaluate_warns_about_gold_labels_the_pipeline_never_saw(trained_pipeline, tmp_path):
    """A label seen only in dev data trains silently: the scorer says so."""
    nlp = spacy.blank("xx")
    doc = make_doc(nlp, "Ada founded Initech .", [(0, 3, "PER"), (12, 19, "ORG")], [(0, 1, "founded")], "en")
    path = _docbin(tmp_path / "dev.spacy", [doc])
    with pytest.warns(UserWarning, match=r"not trained on: 'founded' \(1\)"):
        scores = evaluate_pipeline(str(trained_pipeline), path)
    assert scores["rel_f_per_label"]["founded"]["r"] == 0.0 and scores["rel_micro_r"] == 0.0


# benchmark (item 9) -----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["speed", "{no_rel}", "{dev}"],
    ["memory", "{no_rel}", "--stream-docs", "10", "--long-doc", "0"],
    ["scaling", "{no_rel}", "--entities", "2", "--docs-per-point", "2"],
], ids=["speed", "memory", "scaling"])
def test_benchmark_on_a_pipeline_without_the_extractor_fails(inputs, tiny_corpus, command):
    """Was a KeyError traceback."""
    args = [a.format(no_rel=inputs["no_rel"], dev=tiny_corpus / "dev.spacy") for a in command]
    out = _fails(_invoke("benchmark", *args))
    assert f"has no component 'relation_extractor'; its components are ['sentencizer']" in out


# spacy train (item 9) ---------------------------------------------------------------


def _spacy_train(train, dev, tmp_path):
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "pair_tok2vec.cfg"), "--paths.train", str(train),
           "--paths.dev", str(dev), "--training.max_steps", "1", "--output", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode != 0 and "E143" not in result.stderr
    return result.stderr


def test_spacy_train_on_an_empty_training_set_says_so(inputs, tiny_corpus, tmp_path):
    """Stopped with spaCy's E143 "labels not initialized"."""
    err = _spacy_train(inputs["empty"], tiny_corpus / "dev.spacy", tmp_path)
    assert f"The relation corpus {inputs['empty']} holds no docs" in err


def test_spacy_train_on_a_training_set_without_relations_says_so(inputs, tiny_corpus, tmp_path):
    err = _spacy_train(inputs["bare"], tiny_corpus / "dev.spacy", tmp_path)
    assert "No gold relations in the training data" in err and "read 8 examples in de, en, pl with 16 entities and 0 gold relations" in err
