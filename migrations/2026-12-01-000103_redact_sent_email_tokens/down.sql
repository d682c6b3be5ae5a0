-- Nothing to undo: the redacted tokens are gone (they were single-use
-- links that must not be restored). Reverting is a no-op.
SELECT 1;
