-- v0002: data-quality results, quarantined bars, unconfirmed-price flags, dq_failed runs.

-- One row per expectation evaluated per suite per run.
CREATE TABLE meta.dq_results (
    run_id            VARCHAR     NOT NULL,
    suite             VARCHAR     NOT NULL,
    check_name        VARCHAR     NOT NULL,
    expectation_type  VARCHAR     NOT NULL,
    columns           VARCHAR     NOT NULL,
    severity          VARCHAR     NOT NULL CHECK (severity IN ('blocking', 'warning')),
    success           BOOLEAN     NOT NULL,
    observed_value    VARCHAR,
    unexpected_count  BIGINT,
    element_count     BIGINT,
    validated_at      TIMESTAMPTZ NOT NULL
);

-- One row per incoming bar held back by a blocking check, with every check it failed.
CREATE TABLE raw.quarantined_bars (
    symbol          VARCHAR     NOT NULL,
    session_date    DATE,
    open            DOUBLE,
    high            DOUBLE,
    low             DOUBLE,
    close           DOUBLE,
    adj_close       DOUBLE,
    volume          DOUBLE,
    dividends       DOUBLE,
    stock_splits    DOUBLE,
    source          VARCHAR     NOT NULL,
    fetched_at      TIMESTAMPTZ NOT NULL,
    run_id          VARCHAR     NOT NULL,
    reasons         VARCHAR     NOT NULL
);

-- A close that moved beyond the bound with no split to explain it is published but unconfirmed.
ALTER TABLE staging.prices ADD COLUMN is_unconfirmed BOOLEAN DEFAULT false;
UPDATE staging.prices SET is_unconfirmed = false;
ALTER TABLE marts.loan_ltv_daily ADD COLUMN is_unconfirmed BOOLEAN DEFAULT false;
UPDATE marts.loan_ltv_daily SET is_unconfirmed = false;

-- meta.runs gains the dq_failed status: DuckDB cannot alter a CHECK, so the table is rebuilt.
CREATE TABLE meta.runs_v2 (
    run_id         VARCHAR     NOT NULL,
    flow           VARCHAR     NOT NULL,
    parameters     JSON        NOT NULL,
    source         VARCHAR,
    as_of_start    DATE,
    as_of_end      DATE,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    status         VARCHAR     NOT NULL CHECK (status IN ('succeeded', 'failed', 'dq_failed')),
    bars_fetched   BIGINT      NOT NULL DEFAULT 0,
    prices_staged  BIGINT      NOT NULL DEFAULT 0,
    fx_staged      BIGINT      NOT NULL DEFAULT 0,
    ltv_rows       BIGINT      NOT NULL DEFAULT 0,
    error          VARCHAR
);
INSERT INTO meta.runs_v2 SELECT * FROM meta.runs;
DROP TABLE meta.runs;
ALTER TABLE meta.runs_v2 RENAME TO runs;
