"""Which files a conversion reads, and where each one's docs go.

An input file or folder becomes `Source`s: the split comes from the file name
(ai-train.json, val_triples.json, TEST_FILE_FULL.TXT), the output group and
language from a sub-folder name (Multi-CrossRE translation/german/ -> de) or a
trailing code in the file name (RELX_de.txt). Which files in a folder are data
is the converter's choice (`Converter.data_files`).
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence

from .record import InvalidRecord, check_lang


class DataFiles(Protocol):
    """What finding sources needs of a converter (converter.Converter has it;
    named here so that this module, which the converter imports, imports no converter)."""

    name: str
    patterns: Sequence[str]
    default_lang: Optional[str]

    def data_files(self, folder: Path) -> List[Path]: ...

    def filter_files(self, files: List[Path], options: Dict[str, Any]) -> List[Path]: ...

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev", "development": "dev",
    "test": "test", "testing": "test",
}

LANGUAGE_NAMES = {
    "afrikaans": "af", "albanian": "sq", "amharic": "am", "arabic": "ar", "armenian": "hy",
    "basque": "eu", "belarusian": "be", "bengali": "bn", "bulgarian": "bg", "catalan": "ca",
    "chinese": "zh", "croatian": "hr", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "estonian": "et", "farsi": "fa", "finnish": "fi", "french": "fr",
    "galician": "gl", "georgian": "ka", "german": "de", "greek": "el", "gujarati": "gu",
    "hebrew": "he", "hindi": "hi", "hungarian": "hu", "icelandic": "is", "indonesian": "id",
    "irish": "ga", "italian": "it", "japanese": "ja", "kannada": "kn", "kazakh": "kk",
    "korean": "ko", "latvian": "lv", "lithuanian": "lt", "macedonian": "mk", "malay": "ms",
    "malayalam": "ml", "marathi": "mr", "nepali": "ne", "norwegian": "no", "persian": "fa",
    "polish": "pl", "portuguese": "pt", "punjabi": "pa", "romanian": "ro", "russian": "ru",
    "serbian": "sr", "sinhala": "si", "slovak": "sk", "slovenian": "sl", "spanish": "es",
    "swahili": "sw", "swedish": "sv", "tagalog": "tl", "tamil": "ta", "telugu": "te",
    "thai": "th", "turkish": "tr", "ukrainian": "uk", "urdu": "ur", "vietnamese": "vi",
    "welsh": "cy", "yoruba": "yo",
}
_ISO_CODES = frozenset(LANGUAGE_NAMES.values())


def language_from_name(name: str) -> Optional[str]:
    """A language tag from a folder or file name: 'german' -> 'de', 'de' -> 'de',
    'BR_portuguese' -> 'pt-BR' (region kept so variants get their own output
    folder; `doc._.lang` itself stores 'pt'). None when it names no language."""
    low = name.lower()
    if low in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[low]
    if low in _ISO_CODES:
        return low
    m = re.fullmatch(r"([a-z]{2})[_-]([a-z]+)", low)
    if m and m.group(2) in LANGUAGE_NAMES:
        return f"{LANGUAGE_NAMES[m.group(2)]}-{m.group(1).upper()}"
    m = re.fullmatch(r"([a-z]{2})[_-]([a-z]{2})", low)
    if m and m.group(1) in _ISO_CODES:
        return f"{m.group(1)}-{m.group(2).upper()}"
    return None


def language_from_filename(path: Path) -> Optional[str]:
    """A trailing ISO code in a file name, as RELX names its files (RELX_de.txt)."""
    m = re.search(r"[_-]([a-z]{2})$", path.stem)
    return m.group(1) if m and m.group(1) in _ISO_CODES else None


def split_from_name(path: Path) -> Optional[str]:
    """train / dev / test from a file name such as 'ai-train.json', 'val_triples.json'
    or 'TEST_FILE_FULL.TXT'; None when the name names no split."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    for word in words:
        if word in SPLIT_ALIASES:
            return SPLIT_ALIASES[word]
    return None


@dataclass
class Source:
    """One input file and where its docs go: `group` is the output sub-folder
    ('' for OUTPUT_DIR itself), `split` the DocBin name, `lang` the default
    language of its records."""

    path: Path
    split: str
    group: str = ""
    lang: Optional[str] = None


def find_sources(
    conv: DataFiles, input_path: Path, lang: Optional[str], split: Optional[str],
    options: Optional[Dict[str, Any]] = None,
) -> List[Source]:
    """Input file or folder -> sources. A folder holding data files gives one
    group; a folder of sub-folders that hold data files (Multi-CrossRE's
    translation/<language>/, CasRel's data/<dataset>/) gives one group per
    sub-folder, named by its language code when the name is a language."""
    options = options or {}
    if lang is not None:
        try:
            check_lang(lang, "--lang")
        except InvalidRecord as err:
            raise ValueError(err.detail) from None
    if input_path.is_file():
        return [_source(conv, input_path, "", lang, split)]
    if not input_path.is_dir():
        raise FileNotFoundError(f"No such file or folder: {input_path}")
    files = conv.filter_files(conv.data_files(input_path), options)
    if files:
        folder_lang = lang or language_from_name(input_path.name)
        return [_source(conv, f, "", folder_lang, split) for f in files]
    sources = []
    for sub in sorted(p for p in input_path.iterdir() if p.is_dir()):
        files = conv.filter_files(conv.data_files(sub), options)
        tag = language_from_name(sub.name)
        sources.extend(_source(conv, f, tag or sub.name, lang or tag, split) for f in files)
    if not sources:
        raise FileNotFoundError(
            f"No {conv.name} data files ({', '.join(conv.patterns)}) in {input_path} or its sub-folders."
        )
    return sources


def _source(conv: DataFiles, path: Path, group: str, lang: Optional[str], split: Optional[str]) -> Source:
    lang = lang or language_from_filename(path) or conv.default_lang
    return Source(path, split or split_from_name(path) or path.stem, group, lang)
