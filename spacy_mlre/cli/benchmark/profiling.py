"""`--profile` of `benchmark speed` and `benchmark train`: cProfile of one
batch, the top functions by cumulative time, and every Python function called
at least once per candidate pair or per token, where a per-pair or per-token
Python loop shows up."""
import cProfile
import pstats
from pathlib import Path
from typing import Any, Dict, Sequence

from ._common import COMPONENT


def _short_function(name: str) -> str:
    """Paths in a pstats name from the package (site-packages/... or spacy_mlre/...) on."""
    for marker in ("site-packages/", "/spacy_mlre/"):
        if marker in name:
            head, _, rest = name.partition(marker)
            if "(" not in head:
                return (marker.strip("/") + "/" if marker == "/spacy_mlre/" else "") + rest
    return name


def _profile_report(profiler: cProfile.Profile, *, what: str, docs: int, tokens: int, pairs: int, top: int) -> Dict[str, Any]:
    stats = pstats.Stats(profiler)
    rows = []
    for func, (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": _short_function(pstats.func_std_string(func)), "ncalls": nc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: -r["cumtime"])
    counts = [x for x in (pairs, tokens) if x > 0]
    threshold = min(counts) if counts else 0
    # Python functions (not built-ins, whose names pstats puts in braces) called once per pair or token or more
    suspects = sorted(
        (r for r in rows if threshold and r["ncalls"] >= threshold and not r["function"].startswith("{")),
        key=lambda r: -r["ncalls"],
    )
    total = max((r["cumtime"] for r in rows), default=0.0)
    lines = [
        f"Profile of one batch: {what} on {docs} docs, {tokens} tokens, {pairs} candidate pairs ({total:.3f} s under cProfile).",
        f"Top {top} functions by cumulative time:",
        f"{'ncalls':>9} {'tottime':>9} {'cumtime':>9}  function",
    ]
    lines += [f"{r['ncalls']:>9} {r['tottime']:>9.4f} {r['cumtime']:>9.4f}  {r['function']}" for r in rows[:top]]
    lines.append(f"Python functions called at least {threshold} times (once per candidate pair or per token, whichever is fewer):")
    lines += [f"{r['ncalls']:>9} {r['tottime']:>9.4f} {r['cumtime']:>9.4f}  {r['function']}" for r in suspects] or ["  none"]
    return {
        "what": what,
        "docs": docs,
        "tokens": tokens,
        "candidate_pairs": pairs,
        "seconds": total,
        "top": rows[:top],
        "per_pair_or_token_calls": suspects,
        "text": "\n".join(lines) + "\n",
        "profiler": profiler,
    }


def profile_pipe(nlp, docs: Sequence[Any], *, component: str = COMPONENT, top: int = 25) -> Dict[str, Any]:
    """cProfile of `nlp.pipe` over `docs` as one batch (after one warm-up pass)."""
    list(nlp.pipe([d.copy() for d in docs], batch_size=max(1, len(docs))))
    batch = [d.copy() for d in docs]
    pairs = nlp.get_pipe(component).get_candidates(batch).n_pairs if batch else 0
    profiler = cProfile.Profile()
    profiler.enable()
    list(nlp.pipe(batch, batch_size=max(1, len(batch))))
    profiler.disable()
    return _profile_report(profiler, what="nlp.pipe", docs=len(batch), tokens=sum(len(d) for d in batch), pairs=pairs, top=top)


def profile_update(nlp, examples: Sequence[Any], optimizer, *, component: str = COMPONENT, top: int = 25) -> Dict[str, Any]:
    """cProfile of one `nlp.update` on `examples` (after one warm-up update)."""
    nlp.update(list(examples), sgd=optimizer)
    docs = [eg.predicted for eg in examples]
    pairs = nlp.get_pipe(component).get_candidates(docs).n_pairs if docs else 0
    profiler = cProfile.Profile()
    profiler.enable()
    nlp.update(list(examples), sgd=optimizer)
    profiler.disable()
    return _profile_report(profiler, what="nlp.update", docs=len(docs), tokens=sum(len(d) for d in docs), pairs=pairs, top=top)


def save_profile(report: Dict[str, Any], path: Path) -> Dict[str, Any]:
    """The text report at `path`, the raw stats (for snakeviz / pstats) next to
    it as .prof; returns what a result stores (no profiler object, which JSON cannot hold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report["text"], encoding="utf8")
    report["profiler"].dump_stats(str(path.with_suffix(".prof")))
    return {"path": str(path), **{k: v for k, v in report.items() if k != "profiler"}}
