"""The DuckDB warehouse: numbered migrations, connections under a run lock, idempotent writes."""
