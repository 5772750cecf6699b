"""The crosslingual command: zero-shot F1 per target language, normalised by the
in-language supervised F1, and multilingual vs monolingual, from evaluate outputs."""
import json
import subprocess
import sys

import pytest

from spacy_mlre.cli.crosslingual import crosslingual_table, load_lang_scores, table_markdown


def _scores(path, per_lang):
    path.mkdir(parents=True)
    body = {"rel_micro_f": 0.0, "rel_f_per_lang": {l: {"p": f, "r": f, "f": f} for l, f in per_lang.items()}}
    (path / "scores.json").write_text(json.dumps(body))
    return path


@pytest.fixture
def evals(tmp_path):
    return {
        "etm_de": _scores(tmp_path / "etm" / "de", {"de": 0.40}),
        "etm_zh": _scores(tmp_path / "etm" / "zh", {"zh": 0.30}),
        "etm_en": _scores(tmp_path / "etm" / "en", {"en": 0.60}),
        "um": _scores(tmp_path / "um", {"de": 0.20, "zh": 0.15}),
        "sup_de": _scores(tmp_path / "sup" / "de", {"de": 0.50}),
        "sup_zh": _scores(tmp_path / "sup" / "zh", {"zh": 0.60}),
        "multi": _scores(tmp_path / "multi", {"de": 0.55, "zh": 0.57}),
    }


def test_table_normalises_by_supervised_and_drops_the_source(evals):
    rows = {
        "ETM-ES": load_lang_scores([evals["etm_de"], evals["etm_zh"], evals["etm_en"]]),
        "UM-ES": load_lang_scores([evals["um"]]),
    }
    sup = load_lang_scores([evals["sup_de"], evals["sup_zh"] / "scores.json"])
    table = crosslingual_table(rows, sup, source="en", multilingual=load_lang_scores([evals["multi"]]))
    assert table["languages"] == ["de", "zh"]
    assert table["rows"]["ETM-ES"]["f"] == {"de": 0.40, "zh": 0.30}
    assert table["rows"]["ETM-ES"]["average"] == pytest.approx(0.35)
    assert table["normalised"]["ETM-ES"]["ratio"] == pytest.approx({"de": 0.8, "zh": 0.5})
    assert table["normalised"]["UM-ES"]["average"] == pytest.approx((0.4 + 0.25) / 2)
    assert table["supervised"]["average"] == pytest.approx(0.55)
    assert table["multilingual"]["multilingual"]["average"] == pytest.approx(0.56)
    assert table["multilingual"]["monolingual"]["f"] == {"de": 0.5, "zh": 0.6}
    md = table_markdown(table)
    assert "| ETM-ES | 40.0 | 30.0 | 35.0 |" in md
    assert "| ETM-ES (normalised by supervised) | 80% | 50% | 65% |" in md
    assert "| multilingual | 55.0 | 57.0 | 56.0 |" in md


def test_missing_supervised_language_has_no_ratio_and_duplicates_are_errors(evals):
    table = crosslingual_table({"ETM-ES": load_lang_scores([evals["um"]])}, load_lang_scores([evals["sup_de"]]))
    assert table["normalised"]["ETM-ES"]["ratio"] == {"de": pytest.approx(0.4), "zh": None}
    assert table["normalised"]["ETM-ES"]["average"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="scored twice"):
        load_lang_scores([evals["um"], evals["etm_de"]])


def test_cli_writes_json_markdown_and_plot(evals, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spacy_mlre", "crosslingual",
           f"ETM-ES={evals['etm_de']},{evals['etm_zh']}", f"UM-ES={evals['um']}",
           "--supervised", f"{evals['sup_de']},{evals['sup_zh']}", "--multilingual", str(evals["multi"]),
           "--source", "en", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((out / "crosslingual.json").read_text())
    assert table["normalised"]["UM-ES"]["ratio"]["zh"] == pytest.approx(0.25)
    assert "| supervised (in-language) | 50.0 | 60.0 | 55.0 |" in (out / "crosslingual.md").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "normalised.png").stat().st_size > 1000


def test_per_language_table_without_supervised_scores(tmp_path):
    """The multilingual workflow's table: zero-shot F per language, its share of
    the English F, the multilingual model's F; pt-BR / pt-PT told apart by folder."""
    zero = [_scores(tmp_path / "zero" / "en", {"en": 0.40}), _scores(tmp_path / "zero" / "de", {"de": 0.36}),
            _scores(tmp_path / "zero" / "pt-BR", {"pt": 0.30}), _scores(tmp_path / "zero" / "pt-PT", {"pt": 0.20})]
    multi = [_scores(tmp_path / "multi" / "en", {"en": 0.42}), _scores(tmp_path / "multi" / "de", {"de": 0.40}),
             _scores(tmp_path / "multi" / "pt-BR", {"pt": 0.38}), _scores(tmp_path / "multi" / "pt-PT", {"pt": 0.37})]
    table = crosslingual_table({"pair-e5": load_lang_scores(zero)}, {}, source="en", multilingual=load_lang_scores(multi))
    assert table["languages"] == ["de", "pt-BR", "pt-PT"]
    assert table["to_source"]["pair-e5"]["ratio"] == pytest.approx({"de": 0.9, "pt-BR": 0.75, "pt-PT": 0.5})
    assert table["to_source"]["pair-e5"]["min"] == pytest.approx(0.5)
    md = table_markdown(table)
    assert "| language | pair-e5 F | % of en | multilingual F |" in md
    assert "| en | 40.0 | 100% | 42.0 |" in md
    assert "| pt-PT | 20.0 | 50% | 37.0 |" in md
    assert "| mean of targets | 28.7 | 72% | 38.3 |" in md
    assert "normalised by supervised" not in md
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spacy_mlre", "crosslingual", f"pair-e5={tmp_path / 'zero' / '*'}",
           "--multilingual", str(tmp_path / "multi" / "*"), "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "crosslingual.json").read_text())["multilingual_f"]["pt-BR"] == pytest.approx(0.38)
    pytest.importorskip("matplotlib")
    assert (out / "per_language.png").stat().st_size > 1000
