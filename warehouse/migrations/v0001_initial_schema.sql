-- v0001: raw, staging, marts and meta schemas with the tables the pipeline writes.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS marts;

-- One row per bar as fetched (symbol x session date x fetch); append-only.
CREATE TABLE raw.market_bars (
    symbol        VARCHAR     NOT NULL,
    session_date  DATE        NOT NULL,
    open          DOUBLE,
    high          DOUBLE,
    low           DOUBLE,
    close         DOUBLE,
    adj_close     DOUBLE,
    volume        DOUBLE,
    dividends     DOUBLE,
    stock_splits  DOUBLE,
    source        VARCHAR     NOT NULL,
    fetched_at    TIMESTAMPTZ NOT NULL,
    run_id        VARCHAR     NOT NULL
);

-- One row per (symbol, session_date): the latest accepted version of each stock bar.
CREATE TABLE staging.prices (
    symbol        VARCHAR     NOT NULL,
    session_date  DATE        NOT NULL,
    open          DOUBLE,
    high          DOUBLE,
    low           DOUBLE,
    close         DOUBLE      NOT NULL,
    adj_close     DOUBLE,
    volume        BIGINT,
    dividends     DOUBLE,
    stock_splits  DOUBLE,
    source        VARCHAR     NOT NULL,
    run_id        VARCHAR     NOT NULL,
    fetched_at    TIMESTAMPTZ NOT NULL
);

-- One row per (pair, session_date): quote-currency units per base unit (USDJPY: yen per dollar).
CREATE TABLE staging.fx_rates (
    pair            VARCHAR     NOT NULL,
    session_date    DATE        NOT NULL,
    base_currency   VARCHAR     NOT NULL,
    quote_currency  VARCHAR     NOT NULL,
    yahoo_symbol    VARCHAR     NOT NULL,
    rate            DOUBLE      NOT NULL,
    open            DOUBLE,
    high            DOUBLE,
    low             DOUBLE,
    source          VARCHAR     NOT NULL,
    run_id          VARCHAR     NOT NULL,
    fetched_at      TIMESTAMPTZ NOT NULL
);

-- One row per (loan_id, as_of_date): collateral value, balance, LTV and level on a NASDAQ session.
CREATE TABLE marts.loan_ltv_daily (
    loan_id                  VARCHAR NOT NULL,
    as_of_date               DATE    NOT NULL,
    price_date               DATE    NOT NULL,
    fx_date                  DATE,
    currency                 VARCHAR NOT NULL,
    collateral_value         DOUBLE  NOT NULL,
    loan_balance             DOUBLE  NOT NULL,
    ltv                      DOUBLE  NOT NULL,
    status                   VARCHAR NOT NULL CHECK (status IN ('ok', 'warning', 'margin_call', 'liquidation')),
    price                    DOUBLE,
    fx                       DOUBLE,
    margin_call_price        DOUBLE,
    liquidation_price        DOUBLE,
    distance_to_margin_call  DOUBLE  NOT NULL,
    cure_cash                DOUBLE  NOT NULL,
    cure_shares              DOUBLE,
    sessions_since_price     INTEGER NOT NULL,
    is_stale                 BOOLEAN NOT NULL,
    warning_ltv              DOUBLE  NOT NULL,
    margin_call_ltv          DOUBLE  NOT NULL,
    liquidation_ltv          DOUBLE  NOT NULL,
    cure_target_ltv          DOUBLE  NOT NULL,
    source                   VARCHAR NOT NULL,
    run_id                   VARCHAR NOT NULL
);

-- One row per flow run, failed runs included.
CREATE TABLE meta.runs (
    run_id         VARCHAR     NOT NULL,
    flow           VARCHAR     NOT NULL,
    parameters     JSON        NOT NULL,
    source         VARCHAR,
    as_of_start    DATE,
    as_of_end      DATE,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    status         VARCHAR     NOT NULL CHECK (status IN ('succeeded', 'failed')),
    bars_fetched   BIGINT      NOT NULL DEFAULT 0,
    prices_staged  BIGINT      NOT NULL DEFAULT 0,
    fx_staged      BIGINT      NOT NULL DEFAULT 0,
    ltv_rows       BIGINT      NOT NULL DEFAULT 0,
    error          VARCHAR
);
