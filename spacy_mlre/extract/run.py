"""The driver of `extract`: input -> shards -> chunks -> an engine -> shard files.

Shard k holds records k*S .. (k+1)*S-1 of the input (S = `shard_size`,
malformed records included), so the shards are the same on every run and
`--resume` can skip those whose file exists. A shard is cut into chunks of
`batch_size` docs, the unit of work (small, so two workers stay busy even on
a corpus of a few shards); it is written, in record order, once all its
chunks are back. A chunk that failed leaves its shard unwritten.
"""
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from .engines import Engine, Task, make_engine, threads_per_worker
from .inputs import ExtractError, InputFile, Skip, find_inputs, read_records, scan_inputs
from .worker import ChunkResult, PipelineInfo, Spec
from .writers import check_format, finished_shards, remove_partials, write_shard

MANIFEST = "_extract.json"
"""What a run was started with; --resume refuses to mix shards of different runs."""

EXAMPLES_KEPT = 20


@dataclass
class Summary:
    """What a run did (also what the benchmark reads)."""

    docs: int = 0
    words: int = 0
    relations: int = 0
    records: int = 0
    shards: int = 0
    shards_written: int = 0
    shards_resumed: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    skipped_examples: List[str] = field(default_factory=list)
    startup_seconds: float = 0.0
    extract_seconds: float = 0.0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1

    @property
    def words_per_second(self) -> float:
        """Words per second once every worker had loaded the pipeline."""
        return self.words / self.extract_seconds if self.extract_seconds else 0.0

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["words_per_second"] = self.words_per_second
        out["docs_per_second"] = self.docs / self.extract_seconds if self.extract_seconds else 0.0
        return out


class _Shard:
    """A shard being assembled: its chunks' results and its read-time skips."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.n_chunks = 0
        self.results: Dict[int, ChunkResult] = {}
        self.skips: List[Skip] = []
        self.complete = False  # all chunks handed out

    def ready(self) -> bool:
        return self.complete and len(self.results) == self.n_chunks


def extract(
    pipeline: Union[str, Path],
    input_path: Union[str, Path],
    output: Union[str, Path],
    *,
    engine: str = "local",
    n_process: int = 1,
    batch_size: int = 64,
    shard_size: int = 1000,
    scheduler: Optional[str] = None,
    resume: bool = False,
    fmt: str = "jsonl",
    strict: bool = False,
    component: Optional[str] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    n_records: Optional[Callable[[int], None]] = None,
) -> Summary:
    """Extract the relations of every record of INPUT into shard files in OUTPUT.

    Everything that can be checked is checked before any work: the input
    files, the output folder (and, with `resume`, that it holds shards of the
    same run), the format, the records when `strict`, and that the pipeline
    can find entities for records without them. Those stops are ExtractError.
    `progress(docs, relations)` is called after each chunk; `n_records(n)`
    once the input is counted.
    """
    start = time.perf_counter()
    try:
        check_format(fmt)
    except ValueError as err:
        raise ExtractError(str(err)) from None
    if batch_size < 1 or shard_size < 1:
        raise ExtractError(f"--batch-size and --shard-size must be 1 or more, got {batch_size} and {shard_size}.")
    out = Path(output)
    # an OUTPUT inside the INPUT folder: its shards are no input (a --resume would read them)
    files = [f for f in find_inputs(input_path) if out.resolve() not in f.path.resolve().parents]
    if not files:
        raise ExtractError(f"No input files in {input_path} outside OUTPUT {out}.")
    manifest = {
        "pipeline": str(pipeline), "component": component, "format": fmt, "shard_size": shard_size,
        "inputs": [[f.name, f.path.stat().st_size] for f in files],
    }
    done = prepare_output(out, manifest, resume, fmt)
    scan = scan_inputs(files, strict)
    if n_records is not None:
        n_records(scan.records)
    summary = Summary(engine=engine, records=scan.records, shards=-(-scan.records // shard_size))
    spec = Spec(str(pipeline), component, batch_size, strict, threads_per_worker(n_process) if engine == "local" else 0, fmt)
    with make_engine(engine, n_process, scheduler) as runner:
        info = runner.start(spec)
        check_entities(info, scan.without_entities, str(pipeline))
        write_manifest(out, manifest)
        summary.workers = runner.workers
        summary.startup_seconds = time.perf_counter() - start
        began = time.perf_counter()
        _run(runner, files, strict, shard_size, batch_size, set(done), out, fmt, summary, progress)
        summary.extract_seconds = time.perf_counter() - began
    summary.seconds = time.perf_counter() - start
    return summary


def prepare_output(out: Path, manifest: Dict[str, Any], resume: bool, fmt: str) -> List[int]:
    """Create OUTPUT, or check that it holds this run's shards for --resume; the finished shards to skip."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ExtractError(f"Cannot write the output to {out}: it or a folder above it is a file.") from None
    except OSError as err:
        raise ExtractError(f"Cannot write the output to {out}: {err.strerror or err}.") from None
    path = out / MANIFEST
    done = finished_shards(out, fmt)
    if path.exists() or done or any(out.glob("part-*")):
        if not resume:
            raise ExtractError(
                f"{out} holds the output of an earlier run: continue it with --resume, or choose an empty folder."
            )
        old = _read_manifest(path)
        changed = [key for key in manifest if old.get(key) != manifest[key]]
        if changed:
            raise ExtractError(
                f"--resume: {out} was written by a run with other settings ({', '.join(changed)} differ: "
                f"{ {k: old.get(k) for k in changed} }). Resume with the same PIPELINE, INPUT and options, "
                "or choose an empty folder."
            )
    remove_partials(out)
    return done


def write_manifest(out: Path, manifest: Dict[str, Any]) -> None:
    """Written once every check passed, so a run stopped by one leaves OUTPUT as it was."""
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf8")


def _read_manifest(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError):
        raise ExtractError(f"--resume: {path} is missing or unreadable, so the shards there cannot be matched to this run.") from None


def check_entities(info: PipelineInfo, without_entities: Optional[str], pipeline: str) -> None:
    """Records without entities need a pipeline that finds them."""
    if without_entities and not info.finds_entities:
        raise ExtractError(
            f"{without_entities}: the record has no entities, and the pipeline {pipeline} has no component that "
            f"sets them before '{info.component}' (an NER or entity ruler). Give the entities in the input "
            "(JSONL 'entities', or a DocBin with doc.ents), or use a pipeline with an NER."
        )


def _tasks(
    files: List[InputFile], strict: bool, shard_size: int, batch_size: int, done: set, shards: Dict[int, _Shard],
) -> Iterator[Task]:
    """Chunks of the shards not done yet, registering each shard as it is cut."""
    index, position, chunk = 0, 0, []
    shard = _Shard(0)

    def cut() -> Optional[Task]:
        nonlocal chunk
        task = None
        if chunk and shard.index not in done:
            shard.n_chunks += 1
            task = (shard.index, shard.n_chunks - 1, chunk)
        chunk = []
        return task

    for record in read_records(files, strict):
        if position == 0:
            shard = _Shard(index)
            if index not in done:
                shards[index] = shard
        task = None
        if index not in done:
            if isinstance(record, Skip):
                shard.skips.append(record)
            else:
                chunk.append(record)
                if len(chunk) == batch_size:
                    task = cut()
        position += 1
        if position == shard_size:
            task = task or cut()
            shard.complete = True  # before its last chunk is handed out, so it is written once that is back
            index, position = index + 1, 0
        if task is not None:
            yield task
    task = cut()
    shard.complete = True
    if task is not None:
        yield task


def _run(
    runner: Engine, files: List[InputFile], strict: bool, shard_size: int, batch_size: int, done: set, out: Path,
    fmt: str, summary: Summary, progress: Optional[Callable[[int, int], None]],
) -> None:
    shards: Dict[int, _Shard] = {}
    skipped: Counter = Counter()
    summary.shards_resumed = len(done)

    def skip(text: str, kind: str) -> None:
        skipped[kind] += 1
        if len(summary.skipped_examples) < EXAMPLES_KEPT:
            summary.skipped_examples.append(text)

    def finish(shard: _Shard) -> None:
        del shards[shard.index]
        for s in shard.skips:
            skip(str(s), s.kind)
        rows = []
        for i in range(shard.n_chunks):
            result = shard.results[i]
            rows.extend(result.rows)
            for source, line, kind, detail in result.skipped:
                skip(str(Skip(source, line, kind, detail)), kind)
        write_shard(out, shard.index, rows, fmt)
        summary.relations += len(rows)
        summary.shards_written += 1

    tasks = _tasks(files, strict, shard_size, batch_size, done, shards)
    for result in _with_empty_shards(runner.run(tasks), shards):
        if result is not None:
            if result.error:  # only with --strict: its shard stays unwritten
                raise ExtractError(result.error + " (without --strict it would be skipped and counted)")
            shards[result.shard].results[result.chunk] = result
            summary.docs += result.docs
            summary.words += result.words
            if progress is not None:
                progress(result.docs, len(result.rows))
        for ready in [s for s in shards.values() if s.ready()]:
            finish(ready)
    if shards:  # every task came back, so every shard must have been written
        raise RuntimeError(f"extract: shards {sorted(shards)} were never complete; this is a bug.")
    summary.skipped = dict(sorted(skipped.items()))


def _with_empty_shards(results: Iterator[ChunkResult], shards: Dict[int, _Shard]) -> Iterator[Optional[ChunkResult]]:
    """The results, then a None: shards without any chunk (every record
    malformed) are ready without a result, and are written after the last one."""
    yield from results
    yield None
