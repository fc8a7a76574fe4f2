"""How long the bot's model takes to load with many examples, with and without the
remembered vectors (models.encoders.encode_remembered).

The default model built with BANKING77's 10,003 training rows as its ``intents_file``, as
a replica builds it at every start and rollout: first with an empty vectors cache (every
example encoded), then again (the vectors read back). Times both builds, and checks that
they give 200 BANKING77 test questions the same intents and confidences. The model cache
is a fresh folder that borrows this machine's exported MiniLM graphs, so nothing of the
real cache is touched. Writes benchmarks/results/model_load.json and .png.
Run: .venv/bin/python benchmarks/model_load.py [--encoder minilm]   (~3 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bot_latency import banking
from intent_eval import banking77, write_intents
from report import save

from models import encoders
from models.default import build

DATA = Path(os.environ.get("RAYDESK_DATA", "/work/shared/data"))


def timed_build(options: dict[str, Any],
                questions: list[str]) -> tuple[float, list[tuple[str | None, float]]]:
    """Seconds to build the model, and its intents and confidences for ``questions``."""
    started = time.perf_counter()
    model = build(options)
    seconds = time.perf_counter() - started
    return seconds, [(a.intent, a.intent_confidence) for a in model.analyze(questions)]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar([r["vectors"] for r in rows], [r["build_s"] for r in rows])
    ax.set_ylabel("seconds to build the model")
    ax.set_title("Default model, BANKING77's training rows as intents (2 cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", choices=["minilm", "minilm-int8"])
    args = parser.parse_args()
    _, questions = banking()
    real_cache = encoders.model_cache_dir()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "cache"
        cache.mkdir()
        for graph in real_cache.glob("*.onnx") if real_cache.is_dir() else []:
            (cache / graph.name).symlink_to(graph)
        os.environ["RAYDESK_MODEL_CACHE"] = str(cache)
        train = banking77(DATA)[0]
        examples = len(train[0])
        path = write_intents(Path(folder) / "intents.csv", train)
        options = {"encoder": args.encoder, "intents_file": str(path)}
        answers = []
        for vectors in ("encoded", "remembered"):
            seconds, found = timed_build(options, questions[:200])
            rows.append({"vectors": vectors, "build_s": round(seconds, 2)})
            answers.append(found)
            print(json.dumps(rows[-1]), flush=True)
        sizes = sorted(p.stat().st_size for p in (cache / "vectors").glob("*.npy"))
    same = answers[0] == answers[1]
    print(f"same intents and confidences on 200 test questions: {same}; "
          f"vector files (bytes): {sizes}")
    if not same:
        raise SystemExit("the two builds answer differently")
    save("model_load", {"encoder": args.encoder, "examples": examples,
                        "vector_file_bytes": sizes, "same_answers": same}, rows, plot)


if __name__ == "__main__":
    main()
