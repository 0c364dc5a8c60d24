"""Pure Polars transforms: frames in, frames out; no I/O, clock, environment or Prefect."""
