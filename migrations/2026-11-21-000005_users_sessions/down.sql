DROP TABLE login_attempts;
DROP TABLE sessions;
DROP TABLE user_tokens;
DROP TABLE users;
