"""The converter interface and the driver that runs one over a dataset.

A format subclasses `Converter` (which files are data, how to read raw
records, how to parse one into a `Record`); `convert` drives the sources
group by group, builds each record's Doc (`build.build_doc`), counts
everything kept, dropped, repaired or skipped (`stats.SplitStats`) and writes
one DocBin per split.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple

from spacy.tokens import DocBin
from spacy.vocab import Vocab
from tqdm import tqdm

from .build import build_doc
from .record import InvalidRecord, Record
from .sources import Source
from .stats import SplitStats

RawRecords = Iterator[Tuple[int, Any]]

_SPLIT_ORDER = {"train": 0, "dev": 1, "test": 2}


class ConversionError(Exception):
    """A malformed record that stops the run: names file, line and reason."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class Converter:
    """A source format. Subclasses set the class attributes and implement
    `read` (stream raw records with their 1-based line numbers) and `parse`
    (raw record -> Record, raising InvalidRecord)."""

    name: str = ""
    patterns: Tuple[str, ...] = ("*",)
    exclude: FrozenSet[str] = frozenset()
    default_lang: Optional[str] = None
    no_relation: FrozenSet[str] = frozenset()

    def data_files(self, folder: Path) -> List[Path]:
        """The data files directly inside `folder`."""
        found = set()
        for pattern in self.patterns:
            found.update(p for p in folder.glob(pattern) if p.is_file() and p.name not in self.exclude)
        return sorted(found)

    def filter_files(self, files: List[Path], options: Dict[str, Any]) -> List[Path]:
        """Hook for format options that select files (CrossRE `--domains`)."""
        return files

    def read(self, path: Path) -> RawRecords:
        raise NotImplementedError

    def parse(self, raw: Any, source: Source) -> Record:
        raise NotImplementedError


def iter_lines(path: Path) -> RawRecords:
    """Non-empty lines with 1-based numbers, streamed (JSON lines, TSV)."""
    with path.open(encoding="utf8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield i, line


def convert_source(
    conv: Converter, source: Source, vocab: Vocab, docbin: DocBin, stats: SplitStats,
    skip_invalid: bool = False,
) -> None:
    """Convert one file into `docbin`, counting into `stats`. A malformed record
    raises ConversionError (file, line, reason) unless skip_invalid, in which
    case it is counted under its kind and skipped."""
    # a progress bar on a terminal only (disable=None), so logs stay clean
    records = tqdm(conv.read(source.path), desc=source.path.name, unit=" records", leave=False, disable=None)
    for line, raw in records:
        try:
            rec = conv.parse(raw, source)
            if rec.doc_id is None:
                rec.doc_id = f"{source.path.stem}:{line}"
            doc, n_ents = build_doc(vocab, rec, conv.no_relation)
        except InvalidRecord as err:
            if not skip_invalid:
                raise ConversionError(source.path, line, str(err)) from None
            stats.add_skip(err.kind, f"{source.path}:{line}: {err}")
            continue
        docbin.add(doc)
        stats.add_doc(doc, rec, n_ents)


@contextmanager
def msgpack_registries_cached() -> Iterator[None]:
    """srsly looks its msgpack encoders / decoders up on every `msgpack_dumps` /
    `msgpack_loads` call, scanning the installed packages' entry points and the
    whole catalogue registry (about 1 ms, 2-3 calls per doc: most of the cost
    of `DocBin.add` and `DocBin.get_docs`). Look them up once and reuse the
    result inside the block; the registries are left as they were afterwards."""
    from srsly.msgpack import msgpack_decoders, msgpack_encoders

    registries = (msgpack_encoders, msgpack_decoders)
    for registry in registries:
        functions = registry.get_all()
        registry.get_all = lambda functions=functions: dict(functions)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for registry in registries:
            del registry.get_all


def new_docbin() -> DocBin:
    """A DocBin that keeps user_data, where the relations, language and doc id live."""
    return DocBin(store_user_data=True)


def convert(
    conv: Converter, sources: Iterable[Source], output_dir: Path, vocab: Vocab,
    skip_invalid: bool = False,
    on_group_done: Optional[Callable[[str, Dict[str, SplitStats]], None]] = None,
) -> Dict[str, Dict[str, SplitStats]]:
    """Convert sources group by group, writing OUTPUT_DIR[/group]/<split>.spacy
    as each group finishes (so memory holds one group's DocBins at a time)."""
    by_group: Dict[str, List[Source]] = {}
    for src in sources:
        by_group.setdefault(src.group, []).append(src)
    results: Dict[str, Dict[str, SplitStats]] = {}
    with msgpack_registries_cached():
        for group, group_sources in by_group.items():
            results[group] = _convert_group(conv, group_sources, output_dir / group if group else output_dir,
                                            vocab, skip_invalid)
            if on_group_done is not None:
                on_group_done(group, results[group])
    return results


def _convert_group(
    conv: Converter, group_sources: List[Source], out: Path, vocab: Vocab, skip_invalid: bool
) -> Dict[str, SplitStats]:
    """Convert one group's files and write its DocBins, splits in train/dev/test order."""
    docbins: Dict[str, DocBin] = {}
    stats: Dict[str, SplitStats] = {}
    for src in sorted(group_sources, key=lambda s: (_SPLIT_ORDER.get(s.split, 3), s.split)):
        docbin = docbins.setdefault(src.split, new_docbin())
        convert_source(conv, src, vocab, docbin, stats.setdefault(src.split, SplitStats()), skip_invalid)
    out.mkdir(parents=True, exist_ok=True)
    for split, docbin in docbins.items():
        docbin.to_disk(out / f"{split}.spacy")
    return stats
