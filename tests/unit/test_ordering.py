"""raydesk.ordering.Chains: in order per key, at once across keys, driven by events."""

from __future__ import annotations

import asyncio

from raydesk.ordering import Chains

DEADLINE_S = 5.0


async def test_one_key_runs_in_order_and_keys_run_at_once() -> None:
    """The second task of key a waits for the first (even though it could finish first);
    key b does not wait for a; each key is forgotten once its last task is done."""
    chains = Chains()
    log: list[str] = []
    release_a1 = asyncio.Event()

    async def step(name: str, gate: asyncio.Event | None = None) -> None:
        log.append(f"{name} start")
        if gate is not None:
            await gate.wait()
        log.append(f"{name} end")

    chains.add("a", lambda: step("a1", release_a1))
    chains.add("a", lambda: step("a2"))
    b = chains.add("b", lambda: step("b1"))
    await asyncio.wait_for(b, DEADLINE_S)
    assert log == ["a1 start", "b1 start", "b1 end"]
    assert "a" in chains and "b" not in chains and len(chains) == 1
    release_a1.set()
    await asyncio.wait_for(chains.drain(), DEADLINE_S)
    assert log[3:] == ["a1 end", "a2 start", "a2 end"]
    assert len(chains) == 0


async def test_a_failed_task_does_not_stop_the_next() -> None:
    chains = Chains()
    ran: list[str] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    async def after() -> None:
        ran.append("after")

    first = chains.add("a", fail)
    await asyncio.wait_for(chains.add("a", after), DEADLINE_S)
    assert ran == ["after"] and isinstance(first.exception(), RuntimeError)


async def test_wait_any_returns_when_one_key_is_done() -> None:
    chains = Chains()
    await asyncio.wait_for(chains.wait_any(), DEADLINE_S)  # nothing in flight
    gate = asyncio.Event()
    chains.add("slow", gate.wait)

    async def quick() -> None:
        return None

    chains.add("quick", quick)
    await asyncio.wait_for(chains.wait_any(), DEADLINE_S)
    assert "quick" not in chains and "slow" in chains
    gate.set()
    await asyncio.wait_for(chains.drain(), DEADLINE_S)
