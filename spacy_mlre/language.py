"""The per-doc language code and doc id.

Multilingual corpora mix languages inside one pipeline (whose own language is
usually `xx`), so the language is a property of each doc: set by converters or
by the application, serialized with the doc through `doc.user_data`, and read
by the models that route by language (mERE, AMNRE) and by per-language scores.

Lookup order of `doc._.lang`:
1. a value set explicitly (`doc._.lang = "de"`);
2. what common language detectors leave on the doc: `doc._.language` as a
   string (spacy_fastlang) or as a dict with a "language" key
   (spacy-langdetect, spacy-language-detection);
3. the pipeline's language `doc.lang_` (e.g. "xx" for a multilingual blank).

A code the models never saw in training is not an error: it routes like an
unknown language.
"""
from typing import Optional

from spacy.tokens import Doc

LANG_KEY = "spacy_mlre.lang"
DOC_ID_KEY = "spacy_mlre.doc_id"


def _normalise(code: str) -> str:
    """ISO 639-1 code in lower case; region suffixes ("pt-BR", "zh_Hans") dropped."""
    code = code.strip().replace("_", "-").split("-")[0].lower()
    return code


def get_lang(doc: Doc) -> str:
    code = doc.user_data.get(LANG_KEY)
    if code:
        return code
    if Doc.has_extension("language"):
        detected = doc._.get("language")
        if isinstance(detected, dict):
            detected = detected.get("language")
        if isinstance(detected, str) and detected and detected.lower() != "unknown":
            return _normalise(detected)
    return doc.lang_


def set_lang(doc: Doc, code: Optional[str]) -> None:
    if code is None:
        doc.user_data.pop(LANG_KEY, None)
        return
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"A language code must be a non-empty string such as 'en', got {code!r}.")
    doc.user_data[LANG_KEY] = _normalise(code)


def get_doc_id(doc: Doc) -> Optional[str]:
    return doc.user_data.get(DOC_ID_KEY)


def set_doc_id(doc: Doc, doc_id: Optional[str]) -> None:
    if doc_id is None:
        doc.user_data.pop(DOC_ID_KEY, None)
    else:
        doc.user_data[DOC_ID_KEY] = str(doc_id)
