//! Authentication of browser sessions (users, passwords, sessions, CSRF).

use crate::types::AppError;

/// The signed-in user, as server functions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The user's id.
    pub user_id: i64,
    /// The customer account the user belongs to (all data access is scoped
    /// to it).
    pub customer_id: i64,
    /// The user's email.
    pub email: String,
}

/// For server functions: the signed-in user of the current request.
///
/// Errors: [`AppError::Unauthorized`] when nobody is signed in.
pub async fn require_user() -> Result<CurrentUser, AppError> {
    // Placeholder until the session layer lands: nobody is signed in.
    Err(AppError::Unauthorized)
}
