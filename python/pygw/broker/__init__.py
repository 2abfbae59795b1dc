"""Broker: delivery of channel publications and control messages to every node.

:mod:`pygw.broker.memory` delivers within this process (one node); :mod:`pygw.broker.redis`
goes through Redis pub/sub so every node sharing the Redis gets each publication exactly once.
"""

from pygw.broker.base import Broker, BrokerHandler, Publication

__all__ = ["Broker", "BrokerHandler", "Publication"]
