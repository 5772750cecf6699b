import json
import subprocess
import sys

import spacy

from spacy_mlre.cli._machine import machine_info
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


def test_tune_chooses_from_the_given_grid(trained_pipeline, tiny_corpus, tmp_path):
    """--grid: every tuned threshold is one of its values (printed unrounded)."""
    out = _run("tune", trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "tuned", "--grid", "0.005,0.015")
    cfg = spacy.load(tmp_path / "tuned").get_pipe("relation_extractor").cfg
    assert set(cfg["thresholds"]) == {"works_for", "employs"}
    assert set(cfg["thresholds"].values()) <= {0.005, 0.015}
    assert f"works_for\t{cfg['thresholds']['works_for']:g}" in out


def test_tune_for_micro_f_saves_thresholds_from_the_grid(trained_pipeline, tiny_corpus, tmp_path):
    _run("tune", trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "tuned", "--objective", "micro", "--grid", "0.2,0.4")
    cfg = spacy.load(tmp_path / "tuned").get_pipe("relation_extractor").cfg
    assert set(cfg["thresholds"]) == {"works_for", "employs"} and set(cfg["thresholds"].values()) <= {0.2, 0.4}


def test_results_table_collects_every_variant(trained_pipeline, tiny_corpus, tmp_path):
    metrics = tmp_path / "metrics"
    for variant in ("pair", "pair-tuned"):
        _run("evaluate", trained_pipeline, tiny_corpus / "dev.spacy", "-o", metrics / "toy" / variant)
    _run("results", metrics, "--output", metrics / "results")
    table = json.loads((metrics / "results.json").read_text())
    assert [(r["dataset"], r["variant"]) for r in table["results"]] == [("toy", "pair"), ("toy", "pair-tuned")]
    assert set(table["machine"]) == set(machine_info()) and table["machine"]["cores"] >= 1  # as benchmark records it
    md = (metrics / "results.md").read_text()
    assert "| toy | pair | 8 |" in md
    assert "(toy/pair/f1_per_language.png)" in md  # links relative to results.md


def test_results_table_has_the_paper_metric_columns(tmp_path):
    """Joint (mERE) and bag (AMNRE) scores get their own columns."""
    from spacy_mlre.cli.results import collect_results, results_markdown

    for variant, scores in (("mere", {"rel_micro_f": 0.1, "joint_triple_f": 0.04}),
                            ("amnre", {"rel_micro_f": 0.2, "bags": {"auc": 0.31, "p@100": 0.5}})):
        (tmp_path / "data" / variant).mkdir(parents=True)
        (tmp_path / "data" / variant / "scores.json").write_text(json.dumps(scores))
    rows = collect_results(tmp_path)
    assert rows[0]["bag_auc"] == 0.31 and rows[0]["bag_p@100"] == 0.5 and rows[1]["joint_triple_f"] == 0.04
    md = results_markdown(rows, {"cores": 2}, base=tmp_path)
    assert "| data | amnre |  | 20.00 |  | 31.00 | 50.00 |" in md and "| data | mere |  | 10.00 | 4.00 |  |  |" in md
