-- v0007: where each run's time went: wall seconds by stage ({"fetch": 1.2, ..., "other": 0.1,
-- "total": 6.3}), written with the run's record and completed after its last stage.
ALTER TABLE meta.runs ADD COLUMN stage_seconds JSON;
