"""The load test's quick scenario against the shared raydesk: a smoke test of correctness
(never of timings), through the real ``raydesk loadtest`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raydesk.runtime import Runtime
from tests.integration.client import SCALE
from tests.integration.conftest import BOT_INBOX

pytestmark = pytest.mark.integration


def test_quick_load_test_delivers_every_message_once_in_order(runtime: Runtime,
                                                              tmp_path: Path) -> None:
    """Every acknowledged customer message and agent reply reaches its customer and agent
    exactly once and in seq order; the summary, JSON and PNG are written."""
    assert runtime.secrets is not None
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "raydesk.cli", "loadtest", "--quick", "--url", runtime.url,
         f"--admin-token={runtime.secrets.admin_token}", "--inbox", BOT_INBOX,
         "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=240 * SCALE, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "delivery check" in done.stdout
    [report] = out.glob("loadtest_quick_*.json")
    assert report.with_suffix(".png").stat().st_size > 10_000
    result = json.loads(report.read_text())
    check = result["check"]
    assert check["lost"] == check["duplicated"] == check["reordered"] == 0, check
    assert check["exactly_once"]
    assert check["expected"] >= check["acked"] > 0
    assert result["setup"]["customers"] == 30 and result["setup"]["agents"] == 3
    step = result["steps"][0]
    # Customers wrote, agents answered, the bot took part: every path was exercised.
    assert step["sent_customer_per_s"] > 0 and step["sent_agent_per_s"] > 0
    assert result["frames_in"].get("assigned", 0) > 0
    assert result["closed_conversations"] > 0
