-- v0005: forward-looking risk (stress scenarios, hit probabilities, value-at-risk) and the run's report.

-- One row per loan per as-of date per scenario (price shock x FX shock).
CREATE TABLE marts.loan_stress_daily (
    loan_id           VARCHAR NOT NULL,
    as_of_date        DATE    NOT NULL,
    price_shock       DOUBLE  NOT NULL,  -- fractional change of every collateral price, e.g. -0.20
    fx_shock          DOUBLE  NOT NULL,  -- fractional change of the collateral's currency against the loan's; 0 when they are equal
    currency          VARCHAR NOT NULL,  -- the loan's currency, the unit of the amounts below
    collateral_value  DOUBLE  NOT NULL,  -- after both shocks
    loan_balance      DOUBLE  NOT NULL,
    ltv               DOUBLE  NOT NULL,
    status            VARCHAR NOT NULL CHECK (status IN ('ok', 'warning', 'margin_call', 'liquidation')),
    cure_cash         DOUBLE  NOT NULL,  -- repayment that brings the stressed LTV back to the cure target
    run_id            VARCHAR NOT NULL
);

-- One row per loan per as-of date per method ('ewma_mc' or 'filtered_bootstrap').
CREATE TABLE marts.loan_risk_daily (
    loan_id               VARCHAR NOT NULL,
    as_of_date            DATE    NOT NULL,
    method                VARCHAR NOT NULL CHECK (method IN ('ewma_mc', 'filtered_bootstrap')),
    currency              VARCHAR NOT NULL,
    collateral_value      DOUBLE  NOT NULL,  -- market value of the pledged lines at the close, loan currency
    returns_used          INTEGER NOT NULL,  -- daily collateral returns behind the estimate
    sigma_1d              DOUBLE,            -- EWMA (lambda 0.94) volatility of the daily log return
    paths                 INTEGER NOT NULL,
    seed                  BIGINT  NOT NULL,
    var_1d_99             DOUBLE,            -- 99% one-session loss of collateral value, loan currency
    var_10d_99            DOUBLE,            -- 99% ten-session loss of collateral value, loan currency
    p_margin_call_1d      DOUBLE,            -- probability that LTV reaches the margin-call level within 1 session
    p_margin_call_5d      DOUBLE,
    p_margin_call_10d     DOUBLE,
    p_margin_call_21d     DOUBLE,
    p_liquidation_1d      DOUBLE,            -- the same for the liquidation level
    p_liquidation_5d      DOUBLE,
    p_liquidation_10d     DOUBLE,
    p_liquidation_21d     DOUBLE,
    days_of_cover         DOUBLE,            -- typical (one-sigma) daily falls the cushion to margin call absorbs
    cure_period_days      INTEGER NOT NULL,  -- the loan's cure period, to read days_of_cover against
    fall_to_warning       DOUBLE  NOT NULL,  -- uniform fall of all collateral prices that reaches each level
    fall_to_margin_call   DOUBLE  NOT NULL,
    fall_to_liquidation   DOUBLE  NOT NULL,
    warning_price         DOUBLE,            -- share price at each level; single-ticker collateral only
    margin_call_price     DOUBLE,
    liquidation_price     DOUBLE,
    run_id                VARCHAR NOT NULL
);

-- The report a run wrote, if any.
ALTER TABLE meta.runs ADD COLUMN report_path VARCHAR;
