"""raydesk: a self-hosted customer-service system built on Ray."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
