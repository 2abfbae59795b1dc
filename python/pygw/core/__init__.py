"""The vocabulary every layer of pygw shares, depending on nothing else inside pygw.

- :mod:`pygw.core.codes`: WebSocket close codes and error-frame codes (one copy of each);
- :mod:`pygw.core.errors`: domain errors (``Unauthenticated``, ``Forbidden``, ``NotFound``, ...)
  that the HTTP layer turns into the error envelope and the WebSocket layer into error frames,
  each in exactly one place;
- :mod:`pygw.core.control`: the typed cluster control messages (revoke, disconnect, routes
  changed, queries) with their one encoding;
- :mod:`pygw.core.channels`: channel naming and the publish options a channel's namespace gives;
- :mod:`pygw.core.rates` and :mod:`pygw.core.netaddr`: parsing of rate-limit and proxy settings;
- :mod:`pygw.core.timeutil`: timestamps as the wire contract writes them;
- :mod:`pygw.core.envelope`: the HTTP error envelope's bytes.
"""
