-- Rate limits shared by every worker and instance (issue 17): one token bucket per identity
-- ("http:key:<public id>", "http:ip:<address>", "ws:…"). Gateways lease a few tokens at a time
-- with athena.rate_limit_take, so the catalog never grants more than the bucket holds.

CREATE TABLE athena.rate_limit_buckets (
    bucket       text PRIMARY KEY,
    tokens       double precision NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX rate_limit_buckets_refreshed_at_idx ON athena.rate_limit_buckets (refreshed_at);

-- Refill the bucket for the time since its last use (capped at p_burst), add back the tokens a
-- gateway did not use (p_give_back), then grant up to p_want whole tokens. Returns the grant and
-- what is left. clock_timestamp() is read inside the row lock, so concurrent callers never
-- count the same refill twice; only the database's clock is used, so instances may disagree
-- about the time without harm.
CREATE FUNCTION athena.rate_limit_take(
    p_bucket text, p_rate double precision, p_burst double precision,
    p_want integer, p_give_back double precision
) RETURNS TABLE (granted integer, tokens_left double precision)
LANGUAGE plpgsql AS $$
DECLARE
    have double precision;
    got integer;
BEGIN
    INSERT INTO athena.rate_limit_buckets AS b (bucket, tokens, refreshed_at)
    VALUES (p_bucket, p_burst, clock_timestamp())
    ON CONFLICT (bucket) DO UPDATE
       SET tokens = least(p_burst, b.tokens + p_give_back
                          + greatest(0, extract(epoch FROM clock_timestamp() - b.refreshed_at))
                            * p_rate),
           refreshed_at = greatest(b.refreshed_at, clock_timestamp())
    RETURNING b.tokens INTO have;
    got := greatest(0, least(p_want, floor(have)::integer));
    IF got > 0 THEN
        UPDATE athena.rate_limit_buckets SET tokens = have - got WHERE bucket = p_bucket;
    END IF;
    RETURN QUERY SELECT got, have - got;
END
$$;
