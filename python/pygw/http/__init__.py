"""HTTP: routing, validation, the error envelope and OpenAPI, on top of :mod:`pygw.transport`."""
