-- Rate-limit counters, shared by every instance of the server.
--
-- One row per bucket (e.g. 'signup:ip:203.0.113.7', 'action:key:42'): the
-- bucket's current fixed window, anchored at its first hit, and the number of
-- hits in it. server::rate_limit::check counts a hit with one atomic UPSERT;
-- server::rate_limit::purge_expired deletes windows that have ended.
--
-- UNLOGGED: the counters are short-lived and cheap to lose (a crash resets
-- them), so they skip the write-ahead log and cost little per request.
CREATE UNLOGGED TABLE rate_limit_counters (
    bucket       text        PRIMARY KEY CHECK (length(bucket) BETWEEN 1 AND 200),
    window_start timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    hits         bigint      NOT NULL CHECK (hits >= 1),
    CHECK (expires_at > window_start)
);

CREATE INDEX rate_limit_counters_expires_at ON rate_limit_counters (expires_at);
