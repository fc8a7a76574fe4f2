"""The store: conversations, participants and the change feed in Valkey/Redis.

Layout (``{cid}`` is a hash tag so a conversation's keys share a cluster slot):

- ``rd:c:{cid}:log``   stream, one entry per message, entry id ``<seq>-0``, field ``f``
                       holding the message frame exactly as clients receive it
- ``rd:c:{cid}:st``    hash, the conversation's state (status, customer, assignee, ...)
- ``rd:c:{cid}:dd``    hash, ``<sender id>|<client_msg_id>`` -> ``seq|message_id|ts``
- ``rd:c:{cid}:rd``    hash, participant id -> read cursor (seq)
- ``rd:changes``       sorted set, conversation id -> change counter (``rd:changes:n``)
- ``rd:queue``         sorted set, queued conversation id -> time it was queued (ms)
- ``rd:v:{vid}``       hash, a visitor; ``rd:v:{vid}:convs`` sorted set of its conversations
- ``rd:a:{aid}``       hash, an agent; ``rd:a:{aid}:convs`` set of its open conversations;
                       ``rd:agents`` set of agent ids; ``rd:email:<email>`` -> agent id
- ``rd:c:{cid}:notes`` list of private notes; ``rd:c:{cid}:nd`` their dedupe map
- ``rd:canned:<team>`` hash of canned replies; ``rd:canned:<team>:s`` shortcut -> id
- ``rd:metrics``       hash, ``<component>/<process>`` -> its latest metrics snapshot
                       (JSON, raydesk/metrics.py)
- channel ``rd:ev:<participant id>``: every event for that participant's connections;
  ``rd:ev:agents``: conversations opening or changing status, for every agent

Every change to a conversation is one :meth:`Store.commit`: one Lua call that checks the
dedupe map and the sequence fence, appends the messages, updates state, queue and
membership, bumps the change feed and publishes the events, atomically. Commits of many
conversations that arrive together share one pipelined round trip (group commit).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from raydesk import metrics
from raydesk.batching import Batcher
from raydesk.errors import Unavailable

CHANGES = "rd:changes"
CHANGES_COUNTER = "rd:changes:n"
QUEUE = "rd:queue"
AGENTS = "rd:agents"
FAQ = "rd:faq"
# Bumped by every FAQ replacement: Assistant replicas re-index when it moves.
FAQ_VERSION = "rd:faq:v"
# The model an admin chose last (JSON user_config); a restart keeps it.
BOT_MODEL = "rd:bot:model"
# Questions the bot did not answer: "cid:seq" by time; the question (JSON) by "cid:seq";
# the first human answer that followed it (JSON) by "cid:seq".
UNANSWERED = "rd:unanswered"
# Conversations whose customer waits for a bot turn, by the time of the message.
BOT_DUE = "rd:bot:due"
UNANSWERED_QUESTIONS = "rd:unanswered:q"
UNANSWERED_ANSWERS = "rd:unanswered:a"


# The channel every connected agent listens to: conversations opening or changing status.
AGENT_FEED = "agents"


def question_key(cid: str, seq: int) -> str:
    return f"{cid}:{seq}"


def log_key(cid: str) -> str:
    return f"rd:c:{{{cid}}}:log"


def state_key(cid: str) -> str:
    return f"rd:c:{{{cid}}}:st"


def dedupe_key(cid: str) -> str:
    return f"rd:c:{{{cid}}}:dd"


def reads_key(cid: str) -> str:
    return f"rd:c:{{{cid}}}:rd"


def notes_key(cid: str) -> str:
    """List of the conversation's private notes (JSON note frames), oldest first."""
    return f"rd:c:{{{cid}}}:notes"


def note_dedupe_key(cid: str) -> str:
    """Hash ``<author>|<client_msg_id>`` -> the note frame it stored."""
    return f"rd:c:{{{cid}}}:nd"


def canned_key(team: str) -> str:
    """Hash: canned reply id -> JSON {shortcut, text}, one per team (routing partition)."""
    return f"rd:canned:{team}"


def canned_shortcuts_key(team: str) -> str:
    """Hash: shortcut -> canned reply id (a shortcut is unique in its team)."""
    return f"rd:canned:{team}:s"


def visitor_key(vid: str) -> str:
    return f"rd:v:{vid}"


def visitor_convs_key(vid: str) -> str:
    return f"rd:v:{vid}:convs"


def agent_key(aid: str) -> str:
    return f"rd:a:{aid}"


def agent_convs_key(aid: str) -> str:
    return f"rd:a:{aid}:convs"


def email_key(email: str) -> str:
    return f"rd:email:{email.strip().lower()}"


def hash_args(fields: dict[str, str]) -> list[str]:
    """``{"a": "1", "b": "2"}`` as HSET's arguments ``a 1 b 2``."""
    return [item for pair in fields.items() for item in pair]


def channel(participant_id: str) -> str:
    return f"rd:ev:{participant_id}"


# KEYS: 1 log, 2 state, 3 dedupe, 4 changes, 5 changes counter, 6.. keys named by ops.
# ARGV[1]: JSON {cid, expect, dedupe?, dedupe_value?, messages[], state[], ops[], publish[]}
_COMMIT = """
local p = cjson.decode(ARGV[1])
if p.dedupe then
  local prev = redis.call('HGET', KEYS[3], p.dedupe)
  if prev then return {'dup', prev} end
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_seq') or '0')
if last ~= p.expect then return {'stale', tostring(last)} end
for i, m in ipairs(p.messages) do
  redis.call('XADD', KEYS[1], (p.expect + i) .. '-0', 'f', m)
end
if p.dedupe then redis.call('HSET', KEYS[3], p.dedupe, p.dedupe_value) end
if #p.state > 0 then redis.call('HSET', KEYS[2], unpack(p.state)) end
for _, op in ipairs(p.ops) do
  local cmd = op[1]
  local key = KEYS[op[2]]
  if cmd == 'HDELIFEQ' then
    if redis.call('HGET', key, op[3]) == op[4] then redis.call('HDEL', key, op[3]) end
  elseif cmd == 'HSETMAX' then
    if tonumber(redis.call('HGET', key, op[3]) or '-1') < tonumber(op[4]) then
      redis.call('HSET', key, op[3], op[4])
    end
  else
    redis.call(cmd, key, unpack(op, 3))
  end
end
local n = redis.call('INCR', KEYS[5])
redis.call('ZADD', KEYS[4], n, p.cid)
for _, pub in ipairs(p.publish) do redis.call('PUBLISH', pub[1], pub[2]) end
return {'ok', tostring(n)}
"""


@dataclass
class Commit:
    """One atomic change to one conversation (see the module docstring)."""

    cid: str
    expect: int
    messages: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    # (command, key, *args) on keys other than the conversation's own, e.g.
    # ("ZADD", QUEUE, ts, cid); ("HDELIFEQ", key, field, value) deletes a hash field if it
    # holds that value; ("HSETMAX", key, field, n) sets it only if n is larger.
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    publish: list[tuple[str, str]] = field(default_factory=list)
    dedupe: str | None = None
    dedupe_value: str | None = None

    def then(self, following: Commit) -> Commit:
        """This change and ``following``, the same conversation's next change, as one
        commit: both are applied or neither, in one round trip.
        ``following``'s state fields win; its ops run after these."""
        if following.cid != self.cid:
            raise ValueError(f"commit: {following.cid} cannot follow {self.cid} in one commit")
        if following.expect != self.expect + len(self.messages):
            raise ValueError(f"commit: the following change expects seq {following.expect},"
                             f" not {self.expect + len(self.messages)}")
        if following.dedupe is not None:
            raise ValueError("commit: only the first change of a commit has a dedupe key")
        return Commit(cid=self.cid, expect=self.expect,
                      messages=[*self.messages, *following.messages],
                      state={**self.state, **following.state},
                      ops=[*self.ops, *following.ops],
                      publish=[*self.publish, *following.publish],
                      dedupe=self.dedupe, dedupe_value=self.dedupe_value)

    def encode(self) -> tuple[list[str], str]:
        keys = [log_key(self.cid), state_key(self.cid), dedupe_key(self.cid), CHANGES,
                CHANGES_COUNTER]
        ops = []
        for command, key, *args in self.ops:
            keys.append(key)
            ops.append([command, len(keys), *[str(a) for a in args]])
        state = hash_args(self.state)
        payload = {
            "cid": self.cid, "expect": self.expect, "messages": self.messages,
            "state": state, "ops": ops, "publish": [list(p) for p in self.publish],
        }
        if self.dedupe is not None:
            payload["dedupe"] = self.dedupe
            payload["dedupe_value"] = self.dedupe_value
        return keys, json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True)
class CommitResult:
    """``ok`` (applied), ``dup`` (``value`` is the stored dedupe value) or ``stale``
    (the store's last seq, ``value``, differs from the expected one: nothing applied)."""

    outcome: str
    value: str


def _store_errors(exc: RedisError) -> Unavailable:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return Unavailable("the store is unreachable, try again")
    return Unavailable("the store refused the request, try again")


# Connections per process, and how long a call waits for one before "unavailable". Valkey
# runs commands one at a time: more connections than this only queue there instead.
POOL_CONNECTIONS = 100
POOL_WAIT_S = 10.0


class Store:
    """Async access to the store; one instance per process (it owns a connection pool)."""

    def __init__(self, url: str, password: str | None = None) -> None:
        # A bounded pool whose callers wait for a free connection: redis-py's default pool
        # refuses the 101st concurrent call (MaxConnectionsError), which under load turned
        # a busy moment into "unavailable" errors (benchmarks/loadtest.py found it).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, password=password, decode_responses=True, socket_connect_timeout=5,
            socket_timeout=10, health_check_interval=30,
            max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_S,
            # After a store restart every pooled connection is dead; a command that meets
            # one reconnects and is sent again. Safe for commits too: a resent commit that
            # had been applied answers "dup" (sends) or "stale" (the shard reloads).
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError],
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._commit_sha = hashlib.sha1(_COMMIT.encode()).hexdigest()
        # One flush at a time: pipelines on two connections could interleave.
        self._commits: Batcher[Commit, CommitResult] = Batcher(self._flush_commits,
                                                               max_in_flight=1)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    async def commit(self, change: Commit) -> CommitResult:
        """Apply one conversation change atomically; returns when the store has it."""
        return await self._commits.submit(change)

    async def _flush_commits(self, changes: list[Commit]) -> Sequence[CommitResult]:
        encoded = [change.encode() for change in changes]
        started = time.perf_counter()
        try:
            replies = await self._evalsha_all(encoded)
            if any(isinstance(r, NoScriptError) for r in replies):
                # The server restarted or flushed its scripts: nothing ran, load and redo.
                self._commit_sha = await self.redis.script_load(_COMMIT)
                replies = await self._evalsha_all(encoded)
        except RedisError as exc:
            metrics.STORE_ERRORS.labels("commit").inc()
            metrics.STORE_COMMITS.labels("error").inc(len(changes))
            raise _store_errors(exc) from exc
        finally:
            metrics.STORE_COMMIT.observe(time.perf_counter() - started)
        results: list[CommitResult | BaseException] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                results.append(_store_errors(reply) if isinstance(reply, RedisError) else reply)
                metrics.STORE_COMMITS.labels("error").inc()
            else:
                results.append(CommitResult(outcome=reply[0], value=reply[1]))
                metrics.STORE_COMMITS.labels(str(reply[0])).inc()
        return results  # type: ignore[return-value]

    async def _evalsha_all(self, encoded: list[tuple[list[str], str]]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, arg in encoded:
                pipe.evalsha(self._commit_sha, len(keys), *keys, arg)
            return list(await pipe.execute(raise_on_error=False))

    async def call(self, command: str, *args: Any) -> Any:
        """Run one command, with store failures turned into ``unavailable``."""
        started = time.perf_counter()
        try:
            return await self.redis.execute_command(command, *args)
        except RedisError as exc:
            metrics.STORE_ERRORS.labels("call").inc()
            raise _store_errors(exc) from exc
        finally:
            metrics.STORE_CALL.observe(time.perf_counter() - started)

    async def pipeline(self, commands: Sequence[tuple[Any, ...]],
                       atomic: bool = False) -> list[Any]:
        """Run several commands in one round trip; ``atomic``: as one MULTI/EXEC."""
        started = time.perf_counter()
        try:
            async with self.redis.pipeline(transaction=atomic) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())
        except RedisError as exc:
            metrics.STORE_ERRORS.labels("pipeline").inc()
            raise _store_errors(exc) from exc
        finally:
            metrics.STORE_PIPELINE.observe(time.perf_counter() - started)

    # --- reads -------------------------------------------------------------------------

    async def conversation_state(self, cid: str) -> dict[str, str]:
        return dict(await self.call("HGETALL", state_key(cid)))

    async def messages(self, cid: str, since: int, limit: int) -> list[str]:
        """Stored message frames with seq > since, ascending, at most ``limit``."""
        entries = await self.call("XRANGE", log_key(cid), f"{since + 1}-0", "+",
                                  "COUNT", limit)
        return [fields["f"] for _, fields in entries]

    async def states(self, cids: Sequence[str]) -> list[dict[str, str]]:
        replies = await self.pipeline([("HGETALL", state_key(cid)) for cid in cids])
        return [dict(r) for r in replies]

    async def changes_since(self, cursor: int, limit: int) -> tuple[list[str], int]:
        """Conversations changed after ``cursor``, oldest change first, and the new cursor."""
        try:
            rows = await self.redis.zrangebyscore(CHANGES, f"({cursor}", "+inf", start=0,
                                                  num=limit, withscores=True)
        except RedisError as exc:
            raise _store_errors(exc) from exc
        if not rows:
            current = await self.call("GET", CHANGES_COUNTER)
            return [], max(cursor, int(current or 0))
        pairs: list[tuple[str, float]] = list(rows)  # type: ignore[arg-type]
        return [cid for cid, _ in pairs], int(pairs[-1][1])

    async def publish(self, events: Sequence[tuple[str, str]]) -> None:
        if events:
            await self.pipeline([("PUBLISH", ch, payload) for ch, payload in events])
