"""The converter interface and the driver that runs one over a dataset.

A format subclasses `Converter` (which files are data, how to read raw
records, how to parse one into a `Record`); `convert` drives the sources
group by group, builds each record's Doc (`build.build_doc`), counts
everything kept, dropped, repaired or skipped (`stats.SplitStats`) and writes
one DocBin per split.
"""
import os
import re
import tempfile
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
    """A malformed record or input file that stops the run: names file, line and
    reason. `skippable`: a single record, which --skip-invalid would skip and
    count (a file that is not text, or an unreadable JSON array, is not)."""

    def __init__(self, path: Path, line: int, reason: str, skippable: bool = False) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
        self.skippable = skippable


class OutputNotWritable(Exception):
    """The output folder cannot be written: found before any input is read,
    not after a long conversion."""


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


_SNIFF_BYTES = 1 << 16
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"), (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"),
)
_UNDECODED = re.compile("[\udc80-\udcff\x00]")
REENCODE = "re-encode the file as UTF-8"


def check_text_file(path: Path) -> None:
    """Stop on a file that is not UTF-8 text at all (UTF-16 / UTF-32, binary
    data), naming what was found: decoding it line by line would report every
    line as malformed, or read NUL-padded UTF-16 as if it were text."""
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise ConversionError(path, 1, f"not a UTF-8 text file: it starts with the byte-order mark of {name}; {REENCODE}")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise ConversionError(
            path, 1 + head.count(b"\n", 0, nul),
            f"not a UTF-8 text file: NUL byte at byte {nul} (binary data, or UTF-16 / UTF-32 text "
            f"without a byte-order mark); {REENCODE}",
        )


def undecoded(line: str) -> Optional[InvalidRecord]:
    """Why a line read with errors="surrogateescape" is not UTF-8 text (None if it is)."""
    if line.isascii() and "\x00" not in line:
        return None
    m = _UNDECODED.search(line)
    if m is None:
        return None
    column = m.start() + 1
    if m.group() == "\x00":
        return InvalidRecord("not text (NUL byte)", f"NUL byte at column {column}")
    byte = ord(m.group()) - 0xDC00
    return InvalidRecord(
        "not UTF-8", f"byte 0x{byte:02x} at column {column} is not UTF-8 (a Latin-1 or cp1252 file?); {REENCODE}"
    )


def read_text_lines(path: Path) -> Iterator[Tuple[int, str, Optional[InvalidRecord]]]:
    """Every line with its 1-based number, without its line break, and why it is
    not UTF-8 text (None when it is). A UTF-8 byte-order mark is dropped; a line
    that does not decode keeps its undecodable bytes as surrogates, so a format
    can still see the file's layout around it."""
    check_text_file(path)
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            yield i, line, undecoded(line)


def iter_lines(path: Path) -> RawRecords:
    """Non-empty lines with 1-based numbers, streamed (JSON lines, TSV). A line
    that is not UTF-8 text comes as its InvalidRecord, which `convert_source`
    raises or skips like any malformed record."""
    for i, line, error in read_text_lines(path):
        if error is not None:
            yield i, error
        elif line.strip():
            yield i, line


def convert_source(
    conv: Converter, source: Source, vocab: Vocab, docbin: DocBin, stats: SplitStats,
    skip_invalid: bool = False,
) -> None:
    """Convert one file into `docbin`, counting into `stats`. A malformed record
    raises ConversionError (file, line, reason) unless skip_invalid, in which
    case it is counted under its kind and skipped. A file without records, or
    none of whose records converted, is an error even with skip_invalid: it is
    empty, or not this format, and would otherwise give an empty DocBin."""
    # a progress bar on a terminal only (disable=None), so logs stay clean
    records = tqdm(conv.read(source.path), desc=source.path.name, unit=" records", leave=False, disable=None)
    n_records = n_docs = 0
    first_skip: Optional[ConversionError] = None
    for line, raw in records:
        n_records += 1
        try:
            if isinstance(raw, InvalidRecord):
                raise raw
            rec = conv.parse(raw, source)
            if rec.doc_id is None:
                rec.doc_id = f"{source.path.stem}:{line}"
            doc, n_ents = build_doc(vocab, rec, conv.no_relation)
        except InvalidRecord as err:
            error = ConversionError(source.path, line, str(err), skippable=True)
            if not skip_invalid:
                raise error from None
            first_skip = first_skip or error
            stats.add_skip(err.kind, str(error))
            continue
        docbin.add(doc)
        stats.add_doc(doc, rec, n_ents)
        n_docs += 1
    _check_converted(conv, source.path, n_records, n_docs, first_skip)


def _check_converted(
    conv: Converter, path: Path, n_records: int, n_docs: int, first_skip: Optional[ConversionError]
) -> None:
    if n_records == 0:
        raise ConversionError(path, 1, f"no records: the file is empty or blank; is it a {conv.name} file?")
    if n_docs == 0 and first_skip is not None:
        raise ConversionError(
            path, first_skip.line,
            f"none of the file's {n_records} records converted, every one is invalid (the first: "
            f"{first_skip.reason}); is it a {conv.name} file?",
        )


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


PARTIAL_SUFFIX = ".partial"
"""DocBins are written as `<split>.spacy.partial` and renamed only when every
group converted, so a run that stops leaves no .spacy file that reads as a
complete conversion (readers look for *.spacy)."""


def output_folder(output_dir: Path, group: str) -> Path:
    return output_dir / group if group else output_dir


def check_output(output_dir: Path, sources: Iterable[Source], extra_files: Iterable[str] = ()) -> None:
    """Create the output folders and check that each can be written, before
    any input is read: an unwritable OUTPUT_DIR (a file, a folder below a file,
    no permission) used to fail only after the whole conversion."""
    targets: Dict[Path, List[str]] = {output_dir: list(extra_files)}
    for src in sources:
        targets.setdefault(output_folder(output_dir, src.group), []).append(f"{src.split}.spacy")
    for folder, names in targets.items():
        _check_folder(folder)
        for name in names:
            if (folder / name).is_dir():
                raise OutputNotWritable(f"Cannot write {folder / name}: a folder of that name is in the way.")


def _check_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".mlre-write-check-"):
            pass
    except FileExistsError:
        raise OutputNotWritable(f"Cannot write the output to {folder}: it is a file, not a folder.") from None
    except NotADirectoryError:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        raise OutputNotWritable(
            f"Cannot write the output to {folder}: {blocker or 'a path above it'} is a file, not a folder."
        ) from None
    except OSError as err:
        raise OutputNotWritable(f"Cannot write the output to {folder}: {err.strerror or err}.") from None


def convert(
    conv: Converter, sources: Iterable[Source], output_dir: Path, vocab: Vocab,
    skip_invalid: bool = False,
    on_group_done: Optional[Callable[[str, Dict[str, SplitStats]], None]] = None,
) -> Dict[str, Dict[str, SplitStats]]:
    """Convert sources group by group, writing OUTPUT_DIR[/group]/<split>.spacy
    (so memory holds one group's DocBins at a time). The output folders are
    checked first; the files get their names only when every group converted."""
    sources = list(sources)
    check_output(output_dir, sources)
    by_group: Dict[str, List[Source]] = {}
    for src in sources:
        by_group.setdefault(src.group, []).append(src)
    results: Dict[str, Dict[str, SplitStats]] = {}
    written: List[Path] = []
    try:
        with msgpack_registries_cached():
            for group, group_sources in by_group.items():
                results[group] = _convert_group(
                    conv, group_sources, output_folder(output_dir, group), vocab, skip_invalid, written
                )
                if on_group_done is not None:
                    on_group_done(group, results[group])
    except BaseException:
        for partial in written:
            partial.unlink(missing_ok=True)
        raise
    for partial in written:
        os.replace(partial, partial.with_suffix(""))
    return results


def _convert_group(
    conv: Converter, group_sources: List[Source], out: Path, vocab: Vocab, skip_invalid: bool,
    written: List[Path],
) -> Dict[str, SplitStats]:
    """Convert one group's files and write its DocBins (as .partial, listed in
    `written`), splits in train/dev/test order."""
    docbins: Dict[str, DocBin] = {}
    stats: Dict[str, SplitStats] = {}
    for src in sorted(group_sources, key=lambda s: (_SPLIT_ORDER.get(s.split, 3), s.split)):
        docbin = docbins.setdefault(src.split, new_docbin())
        convert_source(conv, src, vocab, docbin, stats.setdefault(src.split, SplitStats()), skip_invalid)
    for split, docbin in docbins.items():
        partial = out / f"{split}.spacy{PARTIAL_SUFFIX}"
        written.append(partial)
        docbin.to_disk(partial)
    return stats
