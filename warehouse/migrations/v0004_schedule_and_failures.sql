-- v0004: skipped runs (holidays) in meta.runs, and run_failed operational alerts.

CREATE TABLE meta.runs_v4 (
    run_id         VARCHAR     NOT NULL,
    flow           VARCHAR     NOT NULL,
    parameters     JSON        NOT NULL,
    source         VARCHAR,
    as_of_start    DATE,
    as_of_end      DATE,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    status         VARCHAR     NOT NULL CHECK (status IN ('succeeded', 'failed', 'dq_failed', 'skipped')),
    bars_fetched   BIGINT      NOT NULL DEFAULT 0,
    prices_staged  BIGINT      NOT NULL DEFAULT 0,
    fx_staged      BIGINT      NOT NULL DEFAULT 0,
    ltv_rows       BIGINT      NOT NULL DEFAULT 0,
    error          VARCHAR
);
INSERT INTO meta.runs_v4 SELECT * FROM meta.runs;
DROP TABLE meta.runs;
ALTER TABLE meta.runs_v4 RENAME TO runs;

CREATE TABLE marts.alerts_v4 (
    alert_key                VARCHAR     NOT NULL,
    loan_id                  VARCHAR     NOT NULL,
    as_of_date               DATE        NOT NULL,
    kind                     VARCHAR     NOT NULL CHECK (kind IN ('level', 'recovery', 'reminder', 'data_quality', 'stale_source', 'run_failed')),
    level                    VARCHAR     NOT NULL,
    previous_level           VARCHAR,
    price_date               DATE,
    currency                 VARCHAR,
    ltv                      DOUBLE,
    price                    DOUBLE,
    margin_call_price        DOUBLE,
    liquidation_price        DOUBLE,
    distance_to_margin_call  DOUBLE,
    cure_cash                DOUBLE,
    cure_shares              DOUBLE,
    episode_start            DATE,
    cure_deadline            DATE,
    sessions_left            INTEGER,
    is_unconfirmed           BOOLEAN,
    detail                   VARCHAR,
    source                   VARCHAR,
    subject                  VARCHAR     NOT NULL,
    body                     VARCHAR     NOT NULL,
    run_id                   VARCHAR     NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL
);
INSERT INTO marts.alerts_v4 SELECT * FROM marts.alerts;
DROP TABLE marts.alerts;
ALTER TABLE marts.alerts_v4 RENAME TO alerts;
