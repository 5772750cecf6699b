"""Converters from the field's data formats to DocBin, and spaCy corpus readers."""
