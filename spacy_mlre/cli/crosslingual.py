"""`python -m spacy_mlre crosslingual`: the zero-shot cross-lingual table of the
entity-marker paper (its Table 3) from `evaluate` outputs.

Each row is a model trained on the source language and evaluated on target
languages; each score is also divided by the in-language supervised score
(a model trained on that language's own training data), the paper's
"normalized by Supervised" transfer efficiency. With `--multilingual`, the
per-language scores of one model trained on all languages are set against the
monolingual (supervised) ones (the paper's Table 7). Languages and scores come
from `rel_f_per_lang` in each scores.json, so one evaluate run may cover one
language or several.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import typer
from wasabi import msg

from ..plots import pyplot
from . import app

LangScores = Dict[str, Dict[str, float]]


def load_lang_scores(paths: Sequence[Path]) -> LangScores:
    """Per-language P/R/F from evaluate outputs (a scores.json or the folder holding it).
    A language seen in two files is an error: which one counts would be arbitrary.
    Docs carry ISO 639-1 codes without region (pt-BR and pt-PT are both pt), so a
    file of one language in a folder named by a regional code of it (`evaluate
    --each` on corpus/multi-crossre/pt-BR/test.spacy) is listed under the folder's name."""
    out: LangScores = {}
    for path in paths:
        path = Path(path)
        file = path / "scores.json" if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"No evaluate output at {path} (expected scores.json).")
        per_lang = json.loads(file.read_text(encoding="utf8")).get("rel_f_per_lang") or {}
        if not per_lang:
            raise ValueError(f"{file} has no per-language scores (rel_f_per_lang): are the docs' languages set?")
        folder = file.parent.name
        if len(per_lang) == 1 and "-" in folder and folder.split("-")[0].lower() == next(iter(per_lang)):
            per_lang = {folder: next(iter(per_lang.values()))}
        for lang, scores in per_lang.items():
            if lang in out:
                raise ValueError(f"Language {lang!r} is scored twice (again in {file}).")
            out[lang] = {k: float(scores[k]) for k in ("p", "r", "f")}
    return out


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def crosslingual_table(
    rows: Dict[str, LangScores],
    supervised: LangScores,
    *,
    source: Optional[str] = None,
    multilingual: Optional[LangScores] = None,
) -> Dict[str, Any]:
    """F per target language and model, normalised by the supervised F.

    The source language is left out of the targets and averages; a target
    without a supervised score has no normalised value (None); averages are
    over the targets that have a value. A row that was also scored on the
    source language gets each target's ratio to that score (`to_source`: the
    share of the source-language F that survives the transfer).
    """
    langs = sorted({lang for scores in rows.values() for lang in scores} - {source})
    table: Dict[str, Any] = {"source": source, "languages": langs, "rows": {}, "normalised": {}, "to_source": {}}
    for name, scores in rows.items():
        f = {lang: scores[lang]["f"] for lang in langs if lang in scores}
        source_f = scores[source]["f"] if source in scores else None
        table["rows"][name] = {"f": f, "average": _mean(list(f.values())), "p": {l: scores[l]["p"] for l in f},
                               "r": {l: scores[l]["r"] for l in f}, "source_f": source_f}
        norm = {lang: (v / supervised[lang]["f"] if lang in supervised and supervised[lang]["f"] > 0 else None) for lang, v in f.items()}
        table["normalised"][name] = {"ratio": norm, "average": _mean([v for v in norm.values() if v is not None])}
        if source_f:
            ratio = {lang: v / source_f for lang, v in f.items()}
            table["to_source"][name] = {"ratio": ratio, "average": _mean(list(ratio.values())), "min": min(ratio.values(), default=None)}
    sup = {lang: supervised[lang]["f"] for lang in langs if lang in supervised}
    table["supervised"] = {"f": sup, "average": _mean(list(sup.values()))}
    if multilingual is not None:
        table["multilingual_f"] = {lang: multilingual[lang]["f"] for lang in sorted(multilingual)}
        both = sorted(set(multilingual) & set(supervised))
        mono = {lang: supervised[lang]["f"] for lang in both}
        multi = {lang: multilingual[lang]["f"] for lang in both}
        table["multilingual"] = {
            "languages": both,
            "monolingual": {"f": mono, "average": _mean(list(mono.values()))},
            "multilingual": {"f": multi, "average": _mean(list(multi.values()))},
        }
    return table


def table_markdown(table: Dict[str, Any]) -> str:
    """The tables as Markdown: F1 (x100), normalised (%), supervised, and multilingual vs monolingual."""
    langs = table["languages"]
    num = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    header = "| model | " + " | ".join(langs) + " | average |"
    rule = "|---|" + "---|" * (len(langs) + 1)
    lines = [f"### Zero-shot cross-lingual RE (source: {table['source'] or '?'}), micro F1", "", header, rule]
    for name, row in table["rows"].items():
        lines.append(f"| {name} | " + " | ".join(num(row["f"].get(l)) for l in langs) + f" | {num(row['average'])} |")
    sup = table["supervised"]
    if sup["f"]:
        for name, row in table["normalised"].items():
            lines.append(f"| {name} (normalised by supervised) | " + " | ".join(pct(row["ratio"].get(l)) for l in langs) + f" | {pct(row['average'])} |")
        lines.append("| supervised (in-language) | " + " | ".join(num(sup["f"].get(l)) for l in langs) + f" | {num(sup['average'])} |")
    lines += ["", *per_language_markdown(table)]
    multi = table.get("multilingual")
    if multi and multi["languages"]:
        ml = multi["languages"]
        lines += ["", "### Multilingual vs monolingual training, micro F1", "",
                  "| model | " + " | ".join(ml) + " | average |", "|---|" + "---|" * (len(ml) + 1)]
        for key in ("monolingual", "multilingual"):
            row = multi[key]
            lines.append(f"| {key} | " + " | ".join(num(row["f"][l]) for l in ml) + f" | {num(row['average'])} |")
    return "\n".join(lines) + "\n"


def per_language_markdown(table: Dict[str, Any]) -> List[str]:
    """One row per language: each model's zero-shot F and its share of the
    model's source-language F, the multilingual model's F, the supervised F."""
    num = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    source, names = table["source"] or "?", list(table["rows"])
    multi, sup = table.get("multilingual_f"), table["supervised"]["f"]
    header = ["language"]
    for name in names:
        header += [f"{name} F", f"% of {source}"] if name in table["to_source"] else [f"{name} F"]
    header += ["multilingual F"] if multi else []
    header += ["supervised F"] if sup else []
    lines = [f"### Per language (source: {source}), micro F1", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    first = [source] if any(row["source_f"] is not None for row in table["rows"].values()) or (multi and source in multi) else []
    for lang in first + table["languages"]:
        cells = [lang]
        for name in names:
            row = table["rows"][name]
            cells.append(num(row["source_f"] if lang == source else row["f"].get(lang)))
            if name in table["to_source"]:
                cells.append("100%" if lang == source else pct(table["to_source"][name]["ratio"].get(lang)))
        cells += [num(multi.get(lang))] if multi else []
        cells += [num(sup.get(lang))] if sup else []
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean of targets"]
    for name in names:
        cells.append(num(table["rows"][name]["average"]))
        if name in table["to_source"]:
            cells.append(pct(table["to_source"][name]["average"]))
    cells += [num(_mean([v for l, v in multi.items() if l in table["languages"]]))] if multi else []
    cells += [num(table["supervised"]["average"])] if sup else []
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_per_language(table: Dict[str, Any], path: Path) -> Optional[Path]:
    """Grouped bars per language: zero-shot F of each model, multilingual F, supervised F."""
    plt = pyplot()
    if plt is None or not table["languages"]:
        return None
    source = table["source"]
    langs = ([source] if source else []) + table["languages"]
    series = {f"{name} (zero-shot)": {**row["f"], **({source: row["source_f"]} if row["source_f"] is not None else {})}
              for name, row in table["rows"].items()}
    if table.get("multilingual_f"):
        series["multilingual"] = table["multilingual_f"]
    if table["supervised"]["f"]:
        series["supervised"] = table["supervised"]["f"]
    return _grouped_bars(plt, path, langs, series, "micro F1",
                         f"Relation extraction per language (trained on {source or '?'} unless multilingual)")


def plot_normalised(table: Dict[str, Any], path: Path) -> Optional[Path]:
    """Grouped bars: normalised zero-shot F1 per target language and model (needs matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    langs, rows = table["languages"], table["normalised"]
    if not langs or not rows:
        return None
    series = {name: row["ratio"] for name, row in rows.items()}
    return _grouped_bars(plt, path, langs, series, "% of supervised F1", f"Zero-shot transfer from {table['source'] or '?'}")


def _grouped_bars(plt, path: Path, langs: List[str], series: Dict[str, Dict[str, Optional[float]]], ylabel: str, title: str) -> Path:
    """One group of bars per language, one bar per series (values x 100; missing ones as 0)."""
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(langs) * len(series) ** 0.5 + 2), 3.4))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(langs))], [100 * (values.get(l) or 0.0) for l in langs], width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(langs))])
    ax.set_xticklabels(langs, rotation=60 if len(langs) > 8 else 0, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # outside the axes: inside, it covers the first language's bars
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parse_row(spec: str) -> tuple:
    if "=" not in spec:
        raise typer.BadParameter(f"A row is NAME=EVAL_DIR[,EVAL_DIR...], got {spec!r}.")
    name, paths = spec.split("=", 1)
    from ..corpus.reader import expand_path

    try:
        return name, [m for p in paths.split(",") if p for m in expand_path(p)]
    except ValueError as err:
        raise typer.BadParameter(str(err))


@app.command("crosslingual")
def crosslingual_cli(
    rows: List[str] = typer.Argument(..., help="NAME=EVAL_DIR[,EVAL_DIR...]: evaluate outputs of a source-language model on target languages"),
    supervised: str = typer.Option("", "--supervised", "-s", help="Comma-separated evaluate outputs of in-language supervised models"),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Write crosslingual.json, crosslingual.md, per_language.png and normalised.png here"),
    source: str = typer.Option("en", "--source", help="The source language (left out of the targets)"),
    multilingual: str = typer.Option("", "--multilingual", "-m", help="Comma-separated evaluate outputs of one model trained on all languages"),
) -> None:
    """Zero-shot cross-lingual table: per language the F, its share of the source
    language's F and of the in-language supervised F, and the multilingual model's F."""
    from ..corpus.reader import expand_path

    split = lambda s: [m for p in s.split(",") if p for m in expand_path(p)]  # noqa: E731
    parsed = dict(_parse_row(spec) for spec in rows)
    try:
        table = crosslingual_table(
            {name: load_lang_scores(paths) for name, paths in parsed.items()},
            load_lang_scores(split(supervised)),
            source=source,
            multilingual=load_lang_scores(split(multilingual)) if multilingual else None,
        )
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    md = table_markdown(table)
    typer.echo(md)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "crosslingual.json").write_text(json.dumps(table, indent=2, ensure_ascii=False), encoding="utf8")
    (output_dir / "crosslingual.md").write_text(md, encoding="utf8")
    plot_per_language(table, output_dir / "per_language.png")
    if table["supervised"]["f"]:
        plot_normalised(table, output_dir / "normalised.png")
    typer.echo(f"Wrote {output_dir}")
