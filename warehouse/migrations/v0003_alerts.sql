-- v0003: the alert record and its delivery outbox.

-- One row per alert: (loan_id, as_of_date, kind, level) is its stable key, `alert_key`.
CREATE TABLE marts.alerts (
    alert_key                VARCHAR     NOT NULL,
    loan_id                  VARCHAR     NOT NULL,
    as_of_date               DATE        NOT NULL,
    kind                     VARCHAR     NOT NULL CHECK (kind IN ('level', 'recovery', 'reminder', 'data_quality', 'stale_source')),
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

-- One row per (alert_key, channel) to deliver; written with the alert, updated by delivery.
CREATE TABLE meta.alert_outbox (
    alert_key        VARCHAR     NOT NULL,
    channel          VARCHAR     NOT NULL,
    status           VARCHAR     NOT NULL CHECK (status IN ('pending', 'delivered')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    last_error       VARCHAR,
    created_at       TIMESTAMPTZ NOT NULL,
    last_attempt_at  TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ
);
