//! How long browser sessions live: an idle timeout (no request for this
//! long ends the session) and an absolute lifetime (counted from sign-in,
//! however active the session), each for customers and, shorter, for staff
//! admins (OWASP ASVS 3.3.1/3.3.2, level 2: re-authentication within
//! 12 hours, idle timeout; NIST SP 800-63B AAL2 sets the same 12 h / 30 min
//! bounds we default to for admins).

/// Session lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A customer's session ends after this long without a request
    /// (`SESSION_IDLE_TIMEOUT_SECONDS`, default 7 days).
    pub idle_seconds: i64,
    /// A customer's session ends this long after sign-in
    /// (`SESSION_ABSOLUTE_LIFETIME_SECONDS`, default 30 days).
    pub absolute_seconds: i64,
    /// A staff admin's session ends after this long without a request
    /// (`ADMIN_SESSION_IDLE_TIMEOUT_SECONDS`, default 30 minutes).
    pub admin_idle_seconds: i64,
    /// A staff admin's session ends this long after sign-in
    /// (`ADMIN_SESSION_ABSOLUTE_LIFETIME_SECONDS`, default 12 hours).
    pub admin_absolute_seconds: i64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_seconds: 7 * 24 * 3600,
            absolute_seconds: 30 * 24 * 3600,
            admin_idle_seconds: 30 * 60,
            admin_absolute_seconds: 12 * 3600,
        }
    }
}

impl SessionSettings {
    /// Longest value any of the four settings accepts: one year.
    pub const MAX_SECONDS: i64 = 365 * 24 * 3600;

    /// (idle, absolute) in seconds for a staff admin's session (`admin`)
    /// or a customer's.
    pub fn limits(&self, admin: bool) -> (i64, i64) {
        if admin {
            (self.admin_idle_seconds, self.admin_absolute_seconds)
        } else {
            (self.idle_seconds, self.absolute_seconds)
        }
    }
}
