"""`python -m spacy_mlre results`: one table of every evaluated variant.

Reads `<metrics>/<dataset>/<variant>/scores.json` as written by the evaluate
command, and the training budget from the evaluated pipeline's config, and
writes `<output>.md` and `<output>.json` with the machine they ran on.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, List

import typer

from . import app
from ._machine import machine_info

COLUMNS = ("rel_micro_p", "rel_micro_r", "rel_micro_f", "rel_macro_f", "semeval_macro_f1", "joint_triple_f", "bag_auc", "bag_p@100")
# paper metrics nested in the scores (evaluate --metrics bags) -> flat columns
NESTED = {"bag_auc": ("bags", "auc"), "bag_p@100": ("bags", "p@100")}


def _budget(model_path: str) -> Dict[str, Any]:
    config = Path(model_path) / "config.cfg"
    if not config.exists():
        return {}
    from spacy.util import load_config

    training = load_config(config, interpolate=False)["training"]
    return {"max_steps": training.get("max_steps"), "max_epochs": training.get("max_epochs")}


def collect_results(metrics_dir: Path) -> List[Dict[str, Any]]:
    rows = []
    for path in sorted(metrics_dir.glob("*/*/scores.json")):
        scores = json.loads(path.read_text(encoding="utf8"))
        row = {"dataset": path.parent.parent.name, "variant": path.parent.name, "n_docs": scores.get("n_docs")}
        row.update({key: scores[key] for key in COLUMNS if key in scores})
        row.update({key: scores[a][b] for key, (a, b) in NESTED.items() if b in (scores.get(a) or {})})
        row.update(_budget(scores.get("model", "")))
        row["words_per_second"] = scores.get("words_per_second")
        plots = sorted(p.name for p in path.parent.glob("*.png"))
        row["plots"] = [str(path.parent / p) for p in plots]
        rows.append(row)
    return rows


def results_markdown(rows: List[Dict[str, Any]], machine: Dict[str, Any], base: Path = Path(".")) -> str:
    """The table; plot links are relative to `base`, the folder of the .md file."""
    used = [c for c in COLUMNS if any(c in r for r in rows)]
    head = ["dataset", "variant", "test docs", *used, "steps", "words/s", "plots"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["variant"], str(r.get("n_docs") or "")]
        cells += [f"{100 * r[c]:.2f}" if c in r else "" for c in used]
        cells += [str(r.get("max_steps", "")), f"{r['words_per_second']:.0f}" if r.get("words_per_second") else ""]
        cells.append(" ".join(f"[{Path(p).stem}]({os.path.relpath(p, base)})" for p in r["plots"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Machine: " + ", ".join(f"{k}={v}" for k, v in machine.items())]
    return "\n".join(lines) + "\n"


@app.command("results")
def results_cli(
    metrics_dir: Path = typer.Argument(Path("metrics"), exists=True, file_okay=False),
    output: Path = typer.Option(Path("metrics/results"), "--output", "-o", help="Writes OUTPUT.md and OUTPUT.json"),
) -> None:
    """Collect every evaluated variant into one Markdown table and JSON."""
    rows = collect_results(metrics_dir)
    machine = machine_info()
    md = results_markdown(rows, machine, base=output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(md, encoding="utf8")
    output.with_suffix(".json").write_text(json.dumps({"results": rows, "machine": machine}, indent=2), encoding="utf8")
    typer.echo(md)
