"""The WebSocket side of a node: :mod:`pygw.ws.hub` (the endpoint) and the parts it composes
(registry, messages, channels, delivery, keep-alive); :mod:`pygw.ws.connection` is one client."""
