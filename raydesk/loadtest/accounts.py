"""The REST side of a load test: its agents, its visitors and the bot's FAQ.

Agents are reused from run to run (``loadtest-00000@loadtest.invalid``, ...), so a staging
server does not collect a hundred new agents per run. Their password is derived from the
admin token, so only whoever holds that token can log in as them. Each run gives them the
run's own skill, and its visitors that skill: the run's conversations go to its agents and
to no one else, and its agents take no skill-bound conversation of real customers (a
conversation without a skill can go to any agent, so run against staging, or put the
load test in its own routing partition: ``--partition``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import httpx

from raydesk.schema import FaqItem

# Agent creation hashes a password (argon2) on the server: a few at a time.
AGENT_CONCURRENCY = 4
REST_TIMEOUT_S = 60.0


class LoadTestError(Exception):
    """The load test could not be set up or run; the message says why."""


def agent_email(index: int) -> str:
    return f"loadtest-{index:05d}@loadtest.invalid"


def agent_password(admin_token: str, email: str) -> str:
    return hmac.new(admin_token.encode(), email.encode(), hashlib.sha256).hexdigest()[:40]


def _failed(what: str, response: httpx.Response) -> LoadTestError:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code')}: {error.get('message')}"
    except ValueError:
        detail = response.text[:200]
    return LoadTestError(f"{what} failed ({response.status_code} {detail})")


async def ensure_agents(base_url: str, admin_token: str, count: int, skill: str,
                        max_chats: int, partition: str | None = None,
                        ) -> list[tuple[str, str]]:
    """Log in (creating them the first time) ``count`` load-test agents with ``skill``
    and ``max_chats``; their ``(agent_id, token)``."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    gate = asyncio.Semaphore(AGENT_CONCURRENCY)
    changes: dict[str, Any] = {"skills": [skill], "max_chats": max_chats}
    if partition:
        changes["partition"] = partition

    async def one(http: httpx.AsyncClient, index: int) -> tuple[str, str]:
        email = agent_email(index)
        credentials = {"email": email, "password": agent_password(admin_token, email)}
        async with gate:
            login = await http.post("/v1/agents/login", json=credentials)
            if login.status_code == 401:
                created = await http.post("/v1/agents", headers=admin, json={
                    **credentials, "name": f"Load test agent {index}", **changes})
                if created.status_code == 409:
                    raise LoadTestError(
                        f"{email} exists with another password (was the admin token "
                        "changed?): remove the load-test agents or restore the token")
                if created.status_code != 201:
                    raise _failed(f"creating agent {email}", created)
                login = await http.post("/v1/agents/login", json=credentials)
            if login.status_code != 200:
                raise _failed(f"logging in agent {email}", login)
            agent_id, token = login.json()["agent_id"], login.json()["token"]
            patched = await http.patch(f"/v1/agents/{agent_id}", headers=admin, json=changes)
            if patched.status_code != 200:
                raise _failed(f"updating agent {email}", patched)
            return agent_id, token

    async with httpx.AsyncClient(base_url=base_url, timeout=REST_TIMEOUT_S) as http:
        return list(await asyncio.gather(*(one(http, i) for i in range(count))))


async def install_faq(base_url: str, admin_token: str, items: Sequence[FaqItem]) -> None:
    """Replace the bot's FAQ (only on a server the load test started itself)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        response = await http.put("/v1/faq", headers={"Authorization": f"Bearer {admin_token}"},
                                  json={"items": [item.model_dump() for item in items]})
        if response.status_code != 200:
            raise _failed("installing the FAQ", response)


async def create_visitors(http: httpx.AsyncClient, count: int, body: dict[str, Any],
                          concurrency: int) -> tuple[list[str], dict[str, int]]:
    """``count`` visitors created concurrently (``POST /v1/visitors``, at most
    ``concurrency`` in flight); their tokens, and failures by status."""
    gate = asyncio.Semaphore(concurrency)
    failures: dict[str, int] = {}

    async def one() -> str | None:
        async with gate:
            try:
                response = await http.post("/v1/visitors", json=body)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                return None
            if response.status_code != 201:
                key = f"http_{response.status_code}"
                failures[key] = failures.get(key, 0) + 1
                return None
            return str(response.json()["token"])

    tokens = await asyncio.gather(*(one() for _ in range(count)))
    return [t for t in tokens if t is not None], failures
