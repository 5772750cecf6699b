"""`spacy_mlre.Corpus.v1`: DocBins as training / evaluation examples.

spaCy's own `spacy.Corpus.v1` gives the pipeline raw text, so a relation
extractor without an NER upstream would see no entities at evaluation time.
This reader gives the predicted side the gold entities (doc.ents and span
groups), sentence starts and language, but never the gold relations; set
`gold_ents = false` to evaluate with the entities of an upstream NER instead.
"""
import glob
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import registry

from ..language import DOC_ID_KEY, LANG_KEY


@registry.readers("spacy_mlre.Corpus.v1")
def create_relation_corpus_reader(
    path: Optional[Union[str, Path]],
    gold_ents: bool = True,
    limit: int = 0,
    max_length: int = 0,
    langs: Optional[List[str]] = None,
) -> Callable[[Language], Iterable[Example]]:
    """path: a .spacy file or a folder of them (searched recursively), a glob
        pattern (corpus/multi-crossre/*/train.spacy), or several of these
        separated by commas (e.g. the train splits of two languages).
    gold_ents: copy gold entities, span groups and sentence starts to the input.
    limit: stop after this many examples (0: all).
    max_length: skip docs longer than this many tokens (0: keep all).
    langs: keep only docs whose language code is listed (None: all).
    """
    return RelationCorpus(path, gold_ents=gold_ents, limit=limit, max_length=max_length, langs=langs)


class RelationCorpus:
    def __init__(
        self,
        path: Optional[Union[str, Path]],
        *,
        gold_ents: bool = True,
        limit: int = 0,
        max_length: int = 0,
        langs: Optional[List[str]] = None,
    ) -> None:
        self.paths = [Path(p.strip()) for p in str(path).split(",") if p.strip()] if path is not None else None
        self.gold_ents = gold_ents
        self.limit = limit
        self.max_length = max_length
        self.langs = set(langs) if langs else None

    def _files(self) -> List[Path]:
        # checked when read, not when built: `spacy debug config` resolves
        # readers before any paths are given
        if not self.paths:
            raise ValueError("The relation corpus reader needs a path: set [paths.train] / [paths.dev] or pass --paths.train.")
        return corpus_files(self.paths)

    def __call__(self, nlp: Language) -> Iterator[Example]:
        count = 0
        skipped = _Skipped()
        files = self._files()
        for path in files:
            for reference in DocBin().from_disk(path).get_docs(nlp.vocab):
                if self.max_length and len(reference) > self.max_length:
                    skipped.long += 1
                    continue
                if self.langs is not None and reference.user_data.get(LANG_KEY) not in self.langs:
                    skipped.langs[reference.user_data.get(LANG_KEY) or "unset"] += 1
                    continue
                yield Example(make_input_doc(reference, gold_ents=self.gold_ents), reference)
                count += 1
                if self.limit and count >= self.limit:
                    return
        if count == 0:
            raise ValueError(self._empty_message(files, skipped))

    def _empty_message(self, files: List[Path], skipped: "_Skipped") -> str:
        """An empty corpus would train or score nothing without a word (spaCy's
        E143 "labels not initialized", scores of 0.00): say what was read."""
        where = ", ".join(map(str, files))
        if not skipped.long and not skipped.langs:
            return (f"The relation corpus {where} holds no docs. Point the reader ([paths.train] / [paths.dev], "
                    "or the command's DATA) at a converted split (python -m spacy_mlre convert writes them).")
        reasons = []
        if skipped.long:
            reasons.append(f"{skipped.long} longer than max_length = {self.max_length} tokens")
        if skipped.langs:
            found = ", ".join(f"{lang} ({n})" for lang, n in sorted(skipped.langs.items()))
            reasons.append(f"{sum(skipped.langs.values())} not in langs = {sorted(self.langs or [])} (their languages: {found})")
        return (f"No doc of the relation corpus {where} passed the reader's filters: {'; '.join(reasons)}. "
                "Change the filters (langs, --langs, max_length) to match the data.")


def expand_path(path: Union[str, Path]) -> List[Path]:
    """The existing paths a data argument names: itself, or the sorted matches
    of a glob pattern (weasel runs project commands without a shell, so
    patterns in project.yml reach the command unexpanded)."""
    path = Path(path)
    if glob.has_magic(str(path)):
        matches = sorted(Path(p) for p in glob.glob(str(path)))
        if not matches:
            raise ValueError(f"Relation corpus not found: nothing matches {path}")
        return matches
    if not path.exists():
        raise ValueError(f"Relation corpus {path} does not exist.")
    return [path]


def corpus_files(paths: Iterable[Union[str, Path]]) -> List[Path]:
    """The .spacy files that data arguments name: files, folders (searched
    recursively) or glob patterns, in order."""
    files: List[Path] = []
    for path in paths:
        for match in expand_path(path):
            found = [match] if match.is_file() else sorted(match.rglob("*.spacy"))
            if not found:
                raise ValueError(f"No .spacy files under {match}")
            files.extend(found)
    return files


class _Skipped:
    """Docs the reader's filters left out, by reason."""

    def __init__(self) -> None:
        self.long = 0
        self.langs: Counter = Counter()


def make_input_doc(reference: Doc, *, gold_ents: bool = True) -> Doc:
    """A fresh doc with the reference's tokens, language and id, plus (with
    gold_ents) its entities, span groups and sentence starts; no relations."""
    words = [t.text for t in reference]
    spaces = [bool(t.whitespace_) for t in reference]
    sent_starts = None
    if gold_ents and reference.has_annotation("SENT_START"):
        sent_starts = [bool(t.is_sent_start) for t in reference]
    doc = Doc(reference.vocab, words=words, spaces=spaces, sent_starts=sent_starts)
    for key in (LANG_KEY, DOC_ID_KEY):
        if key in reference.user_data:
            doc.user_data[key] = reference.user_data[key]
    if gold_ents:
        doc.ents = [Span(doc, e.start, e.end, label=e.label, kb_id=e.kb_id) for e in reference.ents]
        for name, group in reference.spans.items():
            doc.spans[name] = [Span(doc, s.start, s.end, label=s.label, kb_id=s.kb_id) for s in group]
    return doc
