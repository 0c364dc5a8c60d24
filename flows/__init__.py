"""Prefect flows: the only place that orchestrates. Tasks are coarse stages."""
