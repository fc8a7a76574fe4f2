"""models.encoders: MiniLM run by ONNX Runtime gives sentence-transformers' vectors, its
graph is exported once into the model cache and reused, and the cache never holds a
half-written graph. Real models from the installed packages (offline); no Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import encoders

SENTENCES = [
    "hi",
    "How do I reset my password?",
    "I still have not received my new card, I ordered over a week ago and it is late.",
    "What are your opening hours on Saturday?",
    "转人工",
    "",
    "word " * 400,  # longer than the model's 256 tokens: cut, as sentence-transformers does
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def onnx_minilm(cache: Path) -> encoders.MiniLM:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAYDESK_MODEL_CACHE", str(cache))
        return encoders.MiniLM()


def test_onnx_minilm_gives_the_sentence_transformers_vectors(
        onnx_minilm: encoders.MiniLM) -> None:
    reference = encoders.MiniLMTorch().encode(SENTENCES)
    got = onnx_minilm.encode(SENTENCES)
    assert got.shape == reference.shape == (len(SENTENCES), 384)
    assert got.dtype == np.float32
    cosines = (got * reference).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_batch_gives_each_sentence_its_own_vector(onnx_minilm: encoders.MiniLM) -> None:
    """Runs of similar length are padded separately and put back in the caller's order."""
    many = [f"{text} #{i}" for i in range(3) for text in SENTENCES[:5]] * 3
    one_by_one = np.concatenate([onnx_minilm.encode([text]) for text in many])
    batched = onnx_minilm.encode(many)
    assert np.allclose(batched, one_by_one, atol=1e-5)
    assert onnx_minilm.encode([]).shape == (0, 384)


def test_the_graph_is_exported_once_and_reused(onnx_minilm: encoders.MiniLM,
                                               cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    [graph] = cache.glob("minilm-*.onnx")
    assert not list(cache.glob("*.partial"))
    before = graph.stat().st_mtime_ns

    def no_export(source: Path, out: Path) -> None:
        raise AssertionError("exported again although the cache has the graph")

    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(cache))
    monkeypatch.setattr(encoders, "_export_minilm", no_export)
    again = encoders.MiniLM()
    assert graph.stat().st_mtime_ns == before
    assert np.allclose(again.encode(SENTENCES[:2]), onnx_minilm.encode(SENTENCES[:2]))


def test_a_failed_export_leaves_nothing_in_the_cache(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: Path, out: Path) -> None:
        out.write_bytes(b"half a graph")
        raise RuntimeError("killed mid-export")

    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(encoders, "_export_minilm", broken)
    with pytest.raises(RuntimeError, match="mid-export"):
        encoders.MiniLM()
    assert list((tmp_path / "cache").iterdir()) == []


def test_serving_minilm_does_not_need_torch_once_exported(cache: Path,
                                                          onnx_minilm: encoders.MiniLM) -> None:
    """A replica loading the cached graph never imports torch (~300 MB of memory)."""
    code = ("import sys; from models.encoders import MiniLM; MiniLM().encode(['hi']); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "RAYDESK_MODEL_CACHE": str(cache)},
                            cwd=Path(__file__).parents[2], timeout=120, check=True)
    assert result.stdout.strip() == "False", result.stderr


def test_an_unknown_encoder_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'bert' is not one of .*'minilm'"):
        encoders.load_encoder("bert")


def test_the_configs_encoder_choices_are_the_encoders_there_are() -> None:
    """bot.encoder's allowed values (raydesk.config) and models.encoders.ENCODERS are
    two lists of one thing: a new encoder must be in both."""
    from typing import get_args

    from raydesk.config import BotConfig

    allowed = get_args(BotConfig.model_fields["encoder"].annotation)
    assert set(allowed) == set(encoders.ENCODERS)
