"""HTTP routes, one module per area; each exposes ``build(gateway) -> Router``."""
