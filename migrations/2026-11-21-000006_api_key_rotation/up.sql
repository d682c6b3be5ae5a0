-- Key rotation: a rotated key keeps working until expires_at (the grace
-- period), then is rejected like a revoked key. NULL means no expiry.
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
