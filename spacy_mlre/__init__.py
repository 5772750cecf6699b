"""spacy-mlre: multilingual relation extraction for spaCy v3.

Importing the package registers the Doc extensions; the pipeline factory,
architectures, scorer, readers and batchers are registered through entry
points (setup.cfg), so packaged pipelines load without this import.
"""
from spacy.tokens import Doc

from .about import __version__
from .language import get_doc_id, get_lang, set_doc_id, set_lang
from .relations import Relation, get_relations, set_relations


def _register_extensions() -> None:
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", getter=get_relations, setter=set_relations)
    if not Doc.has_extension("lang"):
        Doc.set_extension("lang", getter=get_lang, setter=set_lang)
    if not Doc.has_extension("doc_id"):
        Doc.set_extension("doc_id", getter=get_doc_id, setter=set_doc_id)


_register_extensions()

__all__ = ["Relation", "get_relations", "set_relations", "get_lang", "set_lang", "__version__"]
