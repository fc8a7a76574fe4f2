"""What every raydesk process needs to run: the validated config and resolved secrets.

Built once by the launcher (``raydesk serve``) and passed to the actors and gateway
replicas as their constructor argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from raydesk.config import DEFAULT_PARTITION, Config
from raydesk.placement import shard_name

# The Serve application of the bot's model (the gateway's is "raydesk"): separate, so a
# model swap redeploys it alone and never touches a gateway or its WebSockets.
ASSISTANT_APP = "raydesk-bot"
ASSISTANT_DEPLOYMENT = "Assistant"


@dataclass(frozen=True)
class Settings:
    config: Config
    store_url: str
    store_password: str | None
    signing_key: str
    admin_token: str
    shard_count: int

    @property
    def namespace(self) -> str:
        return self.config.cluster.namespace

    @property
    def shard_names(self) -> list[str]:
        return [shard_name(self.namespace, i) for i in range(self.shard_count)]

    @property
    def partitions(self) -> list[str]:
        """Every routing partition: "default" and the configured ones."""
        return [DEFAULT_PARTITION, *sorted(self.config.routing.partitions)]

    def router_name(self, partition: str = DEFAULT_PARTITION) -> str:
        """The Router actor of a partition (each partition has its own)."""
        if partition == DEFAULT_PARTITION:
            return f"{self.namespace}-router"
        return f"{self.namespace}-router-{partition}"
