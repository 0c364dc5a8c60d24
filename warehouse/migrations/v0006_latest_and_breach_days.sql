-- v0006: two tables the load keeps beside marts.loan_ltv_daily, so the questions asked most are
-- answered without scanning every loan-day (same columns as loan_ltv_daily; filled from it here).

-- One row per loan: its newest loan_ltv_daily row ("where does every loan stand now").
CREATE TABLE marts.loan_ltv_latest AS
SELECT * FROM marts.loan_ltv_daily
QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1;

-- One row per loan per as-of date at margin call or liquidation level: the breach register.
CREATE TABLE marts.margin_call_days AS
SELECT * FROM marts.loan_ltv_daily
WHERE status IN ('margin_call', 'liquidation');
