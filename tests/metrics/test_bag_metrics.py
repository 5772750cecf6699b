"""Held-out bag-level evaluation: ranking, AUC, P@N, and the evaluate CLI's bags metric."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.util import fix_random_seed, registry

from spacy_mlre.metrics.bags import plot_pr_curve, rank_facts

from mlre_testing import make_doc  # noqa: F401


def test_rank_facts_hand_computed():
    scored = [("a", "r1", 0.9), ("b", "r2", 0.1), ("a", "r2", 0.8), ("c", "r1", 0.6), ("b", "r1", 0.7)]
    gold = {("a", "r1"), ("b", "r1"), ("d", "r1")}  # d was never predicted: a miss
    out = rank_facts(scored, gold)
    # ranked: a-r1 hit (P 1), a-r2, b-r1 hit (P 2/3), c-r1, b-r2
    assert out["auc"] == pytest.approx((1 + 2 / 3) / 3)
    assert out["p@100"] == pytest.approx(2 / 5)  # fewer than 100 predictions: all of them
    assert out["p@r0.1"] == 1.0 and out["p@r0.3"] == 1.0
    assert out["p@r0.2"] == 1.0
    assert out["n_facts"] == 3 and out["n_predictions"] == 5
    assert out["curve"]["recall"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert out["curve"]["precision"] == pytest.approx([1, 1 / 2, 2 / 3, 2 / 4, 2 / 5])


def test_p_at_n_counts_the_top_n():
    scored = [(f"bag{i}", "r", 1.0 - i / 1000) for i in range(400)]
    gold = {(f"bag{i}", "r") for i in range(0, 400, 2)} | {(f"bag{i}", "r") for i in range(50)}
    out = rank_facts(scored, gold)
    assert out["p@100"] == pytest.approx((50 + 25) / 100)
    assert out["p@200"] == pytest.approx((50 + 75) / 200)
    assert out["p@300"] == pytest.approx((50 + 125) / 300)


def test_pr_curve_png(tmp_path):
    pytest.importorskip("matplotlib")
    scores = {"bags": rank_facts([("a", "r", 0.9), ("b", "r", 0.5)], {("a", "r")})}
    assert plot_pr_curve(scores, tmp_path / "pr.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def amnre_pipeline(tiny_corpus, tmp_path_factory):
    pytest.importorskip("torch")
    from thinc.api import Adam

    from spacy_mlre.corpus.reader import RelationCorpus

    fix_random_seed(0)
    nlp = spacy.blank("xx")
    embed = {"@architectures": "spacy.MultiHashEmbed.v2", "width": 16, "rows": [500, 100, 100, 100],
             "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "include_static_vectors": False}
    model = {"@architectures": "spacy_mlre.AMNRE.v1", "langs": ["en", "de", "pl"], "hidden_width": 24,
             "discriminator_width": 32, "dropout": 0.0, "embed": embed}
    nlp.add_pipe("relation_extractor", config={"model": model, "multi_label": False})
    examples = list(RelationCorpus(tiny_corpus / "train.spacy")(nlp))
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    batcher = registry.batchers.get("spacy_mlre.bag_batcher.v1")(size=8)
    for _ in range(15):
        for batch in batcher(examples):
            nlp.update(batch, sgd=optimizer)
    path = tmp_path_factory.mktemp("amnre") / "pipeline"
    nlp.to_disk(path)
    return path


def test_evaluate_cli_bags_metric(amnre_pipeline, tiny_corpus, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "spacy_mlre", "evaluate", str(amnre_pipeline), str(tiny_corpus / "dev.spacy"),
           "--metrics", "bags", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    bags = scores["bags"]
    # dev: 8 docs, each with a distinct (person, org) text pair: 16 directed bags, each one fact
    assert bags["n_facts"] == 16 and bags["n_bags"] == 16
    assert bags["auc"] > 0.9 and bags["p@100"] == pytest.approx(16 / bags["n_predictions"])
    assert "| bag auc |" in (out / "scores.md").read_text()
    assert (out / "pr_curve.png").stat().st_size > 1000


def test_language_probe_metric(amnre_pipeline, tiny_corpus):
    """The discriminator check of the AMNRE paper: accuracies in [0, 1] for the
    model's discriminator and a fresh probe on both embeddings, chance from
    the language counts of the scored pairs."""
    from spacy_mlre.cli.evaluate import evaluate_pipeline, scores_markdown

    scores = evaluate_pipeline(str(amnre_pipeline), tiny_corpus / "dev.spacy", metrics=["language_probe"])
    probe = scores["language_probe"]
    counts = probe["languages"]
    assert set(counts) == {"en", "de", "pl"} and sum(counts.values()) == probe["n_pairs"] > 0
    assert max(counts.values()) / probe["n_pairs"] == pytest.approx(probe["chance"], abs=0.35)
    for key in ("discriminator_consistent", "probe_consistent", "probe_individual"):
        assert 0.0 <= probe[key] <= 1.0
    assert "| language probe individual (accuracy) |" in scores_markdown(scores)


def test_linear_probe_separates_what_is_separable_and_not_noise():
    torch = pytest.importorskip("torch")
    from spacy_mlre.metrics.bags import linear_probe_accuracy

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    noise = torch.randn(400, 8, generator=gen)
    separable = noise + 10.0 * torch.nn.functional.one_hot(y, 8).float()  # means 14 noise sds apart
    assert linear_probe_accuracy(separable, y, 2, 200) == 1.0
    assert 0.35 < linear_probe_accuracy(noise, y, 2, 200) < 0.65
