"""spacy-mlre: multilingual relation extraction for spaCy v3.

Importing the package registers the Doc extensions; the pipeline factory,
architectures, scorer, readers and batchers are registered through entry
points (setup.cfg), so packaged pipelines load without this import.
"""
import os
import sys

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


def _torch_single_thread_in_forked_child() -> None:
    """`nlp.pipe(n_process=2)` forks workers; a worker that enters torch's
    thread pool, which the parent already started, hangs forever (the pool's
    threads do not survive a fork). One torch thread per worker, as PyTorch's
    DataLoader workers do: the processes are the parallelism."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


_register_extensions()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_torch_single_thread_in_forked_child)

__all__ = ["Relation", "get_relations", "set_relations", "get_lang", "set_lang", "__version__"]
