"""benchmarks/chaos_check.py: which acks count as given while the store was down."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from chaos_check import Window, examine

from raydesk.loadtest.checker import Ack

# The store fault was injected at t=99.5 s; its process was gone from t=100 s until it
# was started again at t=110 s.
DEAD = [(100.0, 110.0)]
WINDOWS = [Window("store", 99.5, 200.0)]


def _cmid(sent: float) -> str:
    return f"lt1.{int(sent * 1e6)}"  # a load-test client_msg_id carries its send time


def _message(seq: int, sent: float) -> dict[str, Any]:
    return {"seq": seq, "ts": int(sent * 1000), "client_msg_id": _cmid(sent),
            "sender": {"id": "v1"}}


def test_only_acks_of_messages_sent_into_the_outage_count() -> None:
    """An ack on its way when the store died (its message committed before) is not one;
    a message sent once the store was gone and acked before its restart is, and a false
    ack if the final log lacks it; one sent after the restart is not."""
    sends = {"in flight": (99.9, 100.05), "during, stored": (101.0, 105.0),
             "during, missing": (102.0, 106.0), "after": (111.0, 112.0)}
    stored = ["in flight", "during, stored", "after"]
    log = {"last_seq": 4, "messages": [
        _message(seq, sends[name][0]) for seq, name in enumerate(stored, start=1)]}
    seq_of = {name: seq for seq, name in enumerate(stored, start=1)} | {"during, missing": 4}
    acks = [Ack("c1", seq_of[name], f"v1/{_cmid(sent)}") for name, (sent, _) in sends.items()]
    acked_at = {f"v1/{_cmid(sent)}": acked for sent, acked in sends.values()}
    verdict = examine(acks, acked_at, {"c1": log}, WINDOWS, DEAD)
    store = verdict["by_window"]["store"]
    assert store["acked_while_store_down"] == 2
    assert store["false_acks"] == 1 and verdict["false_acks"] == 1
    assert store["lost"] == 1  # the missing one, at seq 4


def test_no_outage_no_count() -> None:
    sent = 101.0
    log = {"last_seq": 1, "messages": [_message(1, sent)]}
    ack = Ack("c1", 1, f"v1/{_cmid(sent)}")
    verdict = examine([ack], {ack.origin: 101.5}, {"c1": log}, [])
    assert verdict["by_window"]["other"]["acked_while_store_down"] == 0
    assert verdict["false_acks"] == 0 and verdict["lost"] == 0
