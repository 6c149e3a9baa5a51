-- The example segments of segment_rules/segments/ in DuckDB SQL: the yardstick of bench_segments.py.
-- Written from SPEC §2.1-2.3, not from the engine: windows are half-open (T - D, T]; shares are
-- compared as exact integers (10 * top >= 7 * total); RFM ranks take the minimum on ties (RANK()).
-- {T} is the reference time (TIMESTAMPTZ literal), {EVENT_FILES} / {CUSTOMER_FILES} the Parquet
-- lists the engine read (same partitions). Each statement separated by ";" is run in order; the
-- last one returns (segment_id, members).

SET TimeZone = 'UTC';

CREATE OR REPLACE TEMP TABLE customers AS
SELECT user_id, signup_at FROM read_parquet({CUSTOMER_FILES});

-- Everything the rules can look at: (T - 365d, T] is the largest window (the RFM lookback).
CREATE OR REPLACE TEMP TABLE ev AS
SELECT e.user_id, e.ts, e.event_type, e.product_id, e.category, e.amount, e.is_promo
FROM read_parquet({EVENT_FILES}) AS e
SEMI JOIN customers AS c ON e.user_id = c.user_id
WHERE e.ts > {T} - INTERVAL 365 DAY AND e.ts <= {T};

CREATE OR REPLACE TEMP TABLE rfm AS
WITH per_user AS (
    SELECT user_id, max(ts) AS recency, count(*) AS frequency, sum(coalesce(amount, 0)) AS monetary
    FROM ev
    WHERE event_type = 'purchase'
    GROUP BY user_id
),
ranked AS (
    SELECT user_id,
           rank() OVER (ORDER BY recency) AS r_rank,
           rank() OVER (ORDER BY frequency) AS f_rank,
           rank() OVER (ORDER BY monetary) AS m_rank,
           count(*) OVER () AS n
    FROM per_user
)
SELECT user_id,
       1 + (5 * (r_rank - 1)) // n AS r,
       1 + (5 * (f_rank - 1)) // n AS f,
       1 + (5 * (m_rank - 1)) // n AS m
FROM ranked;

WITH
rfm_champions AS (SELECT user_id FROM rfm WHERE r = 5 AND f = 5 AND m = 5),
new_high_value AS (SELECT user_id FROM rfm WHERE r = 5 AND f = 1 AND m = 5),
at_risk AS (SELECT user_id FROM rfm WHERE r = 1 AND f IN (3, 4, 5)),
cart_abandoners AS (
    -- latest add_to_cart in (T - 48h, T - 24h], and no purchase after it up to T
    SELECT a.user_id
    FROM (
        SELECT user_id, max(ts) AS last_cart
        FROM ev
        WHERE event_type = 'add_to_cart' AND ts > {T} - INTERVAL 48 HOUR AND ts <= {T} - INTERVAL 24 HOUR
        GROUP BY user_id
    ) AS a
    WHERE NOT EXISTS (
        SELECT 1 FROM ev AS p
        WHERE p.user_id = a.user_id AND p.event_type = 'purchase' AND p.ts > a.last_cart AND p.ts <= {T}
    )
),
category_lovers AS (
    -- 5+ product views in 90d; the most viewed category holds >= 70% of them
    WITH views AS (
        SELECT user_id, category FROM ev WHERE event_type = 'product_view' AND ts > {T} - INTERVAL 90 DAY
    ),
    totals AS (SELECT user_id, count(*) AS total FROM views GROUP BY user_id),
    tops AS (
        SELECT user_id, max(n) AS top
        FROM (SELECT user_id, category, count(*) AS n FROM views WHERE category IS NOT NULL GROUP BY ALL)
        GROUP BY user_id
    )
    SELECT t.user_id FROM totals AS t JOIN tops AS p USING (user_id)
    WHERE t.total >= 5 AND 10 * p.top >= 7 * t.total
),
cherry_pickers AS (
    -- 3+ purchases in 365d, >= 80% of them on promotion
    SELECT user_id FROM ev WHERE event_type = 'purchase'
    GROUP BY user_id
    HAVING count(*) >= 3 AND 5 * count(*) FILTER (WHERE is_promo) >= 4 * count(*)
),
active_30d AS (SELECT DISTINCT user_id FROM ev WHERE ts > {T} - INTERVAL 30 DAY),
dormant AS (SELECT user_id FROM customers ANTI JOIN active_30d USING (user_id)),
bought_7d AS (SELECT DISTINCT user_id FROM ev WHERE event_type = 'purchase' AND ts > {T} - INTERVAL 7 DAY),
new_signups AS (
    SELECT user_id FROM customers
    WHERE signup_at > {T} - INTERVAL 7 DAY AND signup_at <= {T}
      AND user_id NOT IN (SELECT user_id FROM bought_7d)
),
repeat_viewers AS (
    SELECT DISTINCT user_id FROM ev
    WHERE event_type = 'product_view' AND ts > {T} - INTERVAL 7 DAY AND product_id IS NOT NULL
    GROUP BY user_id, product_id
    HAVING count(*) >= 3
    EXCEPT
    SELECT user_id FROM bought_7d
),
reviewers AS (SELECT DISTINCT user_id FROM ev WHERE event_type = 'review' AND ts > {T} - INTERVAL 7 DAY)
SELECT 'at_risk' AS segment_id, count(*) AS members FROM at_risk
UNION ALL SELECT 'cart_abandoners', count(*) FROM cart_abandoners
UNION ALL SELECT 'category_lovers', count(*) FROM category_lovers
UNION ALL SELECT 'cherry_pickers', count(*) FROM cherry_pickers
UNION ALL SELECT 'dormant', count(*) FROM dormant
UNION ALL SELECT 'new_high_value', count(*) FROM new_high_value
UNION ALL SELECT 'new_signups', count(*) FROM new_signups
UNION ALL SELECT 'repeat_viewers', count(*) FROM repeat_viewers
UNION ALL SELECT 'reviewers', count(*) FROM reviewers
UNION ALL SELECT 'rfm_champions', count(*) FROM rfm_champions;
