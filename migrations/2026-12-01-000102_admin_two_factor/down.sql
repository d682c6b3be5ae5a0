DROP TABLE admin_recovery_codes;
DROP TABLE admin_totp;
ALTER TABLE users DROP COLUMN deactivated_at;
