"""`python -m spacy_mlre benchmark speed | scaling | memory | train | extract`: speed and
memory of relation extraction pipelines, measured. Nothing here asserts a
speed: figures go to stdout and JSON.

- speed PIPELINE DATA: `nlp.pipe` over a DocBin (gold entities on the input
  side): docs/s, words/s, candidate pairs/s, relations/s, peak memory and the
  split of the time between the encoder and the relation head.
- scaling PIPELINE_OR_JSON...: docs with exactly N entities each (synthetic
  words, or words from `--data`): time per doc, candidate pairs per doc, the
  encoder/head split and pairs/s per N, for one or several pipelines (earlier
  scaling JSON files merge in), with a table and a plot.
- memory PIPELINE: resident memory sampled while streaming many docs through
  `nlp.pipe`, and the peak memory of one long doc with many entities (in a
  fresh process, so its peak is its own).
- train CONFIG DATA: `nlp.update` examples/s for a config.
- extract PIPELINE DATA: words/s of the extract command with one process, two
  processes and a Dask cluster of two workers, side by side.

`--profile FILE` (speed, train): cProfile of one batch, the top functions by
cumulative time, and every Python function called at least once per candidate
pair or per token (a per-pair or per-token loop shows up there).

One module per sub-command; `_common` holds the `benchmark` app and the timing,
`synthetic` the docs with N entities, `profiling` the cProfile report.
"""
from ._common import COMPONENT, benchmark_app, load_docs, time_split
from .extract import benchmark_extract
from .memory import benchmark_memory, long_doc_check, stream_check
from .profiling import profile_pipe, profile_update, save_profile
from .scaling import benchmark_scaling, merge_scaling, plot_scaling, scaling_table
from .speed import benchmark_inference
from .synthetic import entity_layout, synthetic_docs, text_source
from .train import benchmark_training

__all__ = [
    "COMPONENT", "benchmark_app", "benchmark_extract", "benchmark_inference", "benchmark_memory", "benchmark_scaling", "benchmark_training",
    "entity_layout", "load_docs", "long_doc_check", "merge_scaling", "plot_scaling", "profile_pipe", "profile_update",
    "save_profile", "scaling_table", "stream_check", "synthetic_docs", "text_source", "time_split",
]
