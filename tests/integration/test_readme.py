"""The README's "first chat over the protocol" snippet runs as written."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raydesk.runtime import Runtime
from tests.integration.client import SCALE, Api

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "no python block in README.md"
    lines = [line[3:] if line.startswith("   ") else line for line in blocks[0].splitlines()]
    return "\n".join(lines)


async def test_first_chat_snippet(api: Api, runtime: Runtime, tmp_path: Path) -> None:
    """With the README's agent created, the snippet has the customer ask, the agent get the
    conversation and answer, and the customer receive the answer."""
    await api.agent(email="ada@example.com", password="a long password", name="Ada",
                    skills=["billing"])
    code = snippet().replace("http://127.0.0.1:8080", runtime.url).replace(
        "ws://127.0.0.1:8080", runtime.url.replace("http", "ws", 1))
    script = tmp_path / "first_chat.py"
    script.write_text(code)
    result = await asyncio.to_thread(subprocess.run, [sys.executable, str(script)],
                                     capture_output=True, text=True, timeout=60 * SCALE)
    assert result.returncode == 0, result.stderr
    assert "<- ack" in result.stdout
    assert "<- assigned" in result.stdout
    assert "<- message: Let me fix that." in result.stdout
