import json
import subprocess
import sys

import spacy

from spacy_mlre.cli.results import collect_results, results_markdown


def _run(*args):
    result = subprocess.run([sys.executable, "-m", "spacy_mlre", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_tune_saves_per_label_thresholds(trained_pipeline, tiny_corpus, tmp_path):
    out = _run("tune", trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "tuned")
    assert "works_for\t" in out and "employs\t" in out
    cfg = spacy.load(tmp_path / "tuned").get_pipe("relation_extractor").cfg
    assert set(cfg["thresholds"]) == {"works_for", "employs"}


def test_results_table_collects_every_variant(trained_pipeline, tiny_corpus, tmp_path):
    metrics = tmp_path / "metrics"
    for variant in ("pair", "pair-tuned"):
        _run("evaluate", trained_pipeline, tiny_corpus / "dev.spacy", "-o", metrics / "toy" / variant)
    _run("results", metrics, "--output", metrics / "results")
    table = json.loads((metrics / "results.json").read_text())
    assert [(r["dataset"], r["variant"]) for r in table["results"]] == [("toy", "pair"), ("toy", "pair-tuned")]
    assert table["machine"]["cpu_count"] >= 1
    md = (metrics / "results.md").read_text()
    assert "| toy | pair | 8 |" in md
    assert "(toy/pair/f1_per_language.png)" in md  # links relative to results.md
