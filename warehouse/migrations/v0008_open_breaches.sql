-- v0008: each loan whose newest LTV row is at margin call or liquidation, with the first session of
-- that breach (its first row at either level after its last row at ok or warning), kept by the load
-- beside marts.loan_ltv_latest: a run reads where an open breach began, which its cure deadline
-- counts from, without reading the loan's history. Filled here from marts.loan_ltv_daily.
CREATE TABLE marts.open_breaches AS
WITH latest AS (
    SELECT loan_id, as_of_date, status FROM marts.loan_ltv_latest
    WHERE status IN ('margin_call', 'liquidation')
), last_calm AS (
    SELECT d.loan_id, max(d.as_of_date) AS last_calm
    FROM marts.loan_ltv_daily d JOIN latest USING (loan_id)
    WHERE d.status IN ('ok', 'warning')
    GROUP BY d.loan_id
)
SELECT l.loan_id, l.as_of_date, l.status, min(d.as_of_date) AS episode_start
FROM latest l
JOIN marts.loan_ltv_daily d USING (loan_id)
LEFT JOIN last_calm c USING (loan_id)
WHERE d.as_of_date > coalesce(c.last_calm, DATE '0001-01-01')
GROUP BY l.loan_id, l.as_of_date, l.status;
