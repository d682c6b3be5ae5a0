//! `/admin/2fa`: a staff admin's second factor, after the password at
//! `/login` (see `server::auth::two_factor`). Without a confirmed TOTP
//! secret the page enrols (secret in base32 and its `otpauth://` URL; the
//! first code confirms it, then the recovery codes are shown once);
//! otherwise it asks for a code from the authenticator app or a recovery
//! code. Its server functions act only on the session's pending step
//! (`POST /api/2fa/status`, `POST /api/2fa/verify`): 401 without one.

use crate::app::auth::{form_error, AuthCard, ErrorMessage, Field, SubmitButton, LINK_CLASS};
use crate::types::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What the second-factor page shows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorView {
    /// The admin's email.
    pub email: String,
    /// The secret to enrol, when the admin has none confirmed yet.
    pub enrolment: Option<TotpEnrolment>,
}

/// A TOTP secret being enrolled. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// The secret, base32 (RFC 4648, no padding), for manual entry.
    pub secret_base32: String,
    /// The `otpauth://totp/…` URL authenticator apps read.
    pub otpauth_url: String,
}

/// The outcome of a right code. `Debug` leaves the codes out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorDone {
    /// The new recovery codes after an enrolment (shown this once); empty
    /// otherwise (the browser is redirected to `next`).
    pub recovery_codes: Vec<String>,
    /// Where to go now (a local path).
    pub next: String,
}

impl std::fmt::Debug for TwoFactorView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoFactorView")
            .field("email", &self.email)
            .field("enrolment", &self.enrolment)
            .finish()
    }
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment([REDACTED])")
    }
}

impl std::fmt::Debug for TwoFactorDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoFactorDone")
            .field("recovery_codes", &self.recovery_codes.len())
            .field("next", &self.next)
            .finish()
    }
}

/// `POST /api/2fa/status`: the pending staff admin's email and, when not
/// enrolled yet, the secret to enrol (the same one until confirmed).
///
/// Errors: 401 without a pending second-factor step (signed out, expired
/// after 10 minutes, or already signed in); 500.
#[server(endpoint = "2fa/status")]
pub async fn two_factor_status() -> Result<TwoFactorView, AppError> {
    use crate::server::auth::two_factor::{enrolment, pending_admin};
    use crate::server::auth::{app_state, current_session};
    use secrecy::ExposeSecret;
    let result = async {
        let state = app_state()?;
        let session = current_session().await?;
        let user = pending_admin(&state, &session).await?;
        let mut conn = state
            .conn()
            .await
            .map_err(crate::server::billing::error::to_app_error)?;
        let enrolment = enrolment(&mut conn, &user).await?;
        Ok(TwoFactorView {
            email: user.email,
            enrolment: enrolment.map(|e| TotpEnrolment {
                secret_base32: e.secret_base32.expose_secret().to_owned(),
                otpauth_url: e.otpauth_url.expose_secret().to_owned(),
            }),
        })
    }
    .await;
    crate::app::auth::api::finish(result, "/admin/2fa")
}

/// `POST /api/2fa/verify` (code): a TOTP code (6 digits) or a recovery
/// code for the pending staff admin. Right: signed in (new session id);
/// after an enrolment the answer carries the recovery codes, otherwise the
/// browser is redirected to the `next` of `/login` or `/admin`.
///
/// Errors: 401 without a pending step; 422 "incorrect or already used
/// code" (wrong, replayed, used; counted by the sign-in throttle); 429
/// while throttled; 500.
#[server(endpoint = "2fa/verify")]
pub async fn two_factor_verify(#[server(default)] code: String) -> Result<TwoFactorDone, AppError> {
    use crate::server::auth::two_factor::{verify_second_factor, SecondFactor};
    use crate::server::auth::{app_state, client_ip, current_session};
    use secrecy::ExposeSecret;
    let result = async {
        let state = app_state()?;
        let session = current_session().await?;
        let (_, factor, next) = verify_second_factor(&state, &session, &code, client_ip()).await?;
        let next = next
            .and_then(|n| crate::types::urls::local_path(&n))
            .unwrap_or_else(|| "/admin".to_owned());
        match factor {
            SecondFactor::Enrolled { recovery_codes } => Ok(TwoFactorDone {
                recovery_codes: recovery_codes
                    .iter()
                    .map(|c| c.expose_secret().to_owned())
                    .collect(),
                next,
            }),
            SecondFactor::Totp | SecondFactor::RecoveryCode { .. } => {
                leptos_axum::redirect(&next);
                Ok(TwoFactorDone {
                    recovery_codes: Vec::new(),
                    next,
                })
            }
        }
    }
    .await;
    crate::app::auth::api::finish(result, "/admin/2fa")
}

/// The second-factor page.
#[component]
pub fn TwoFactorPage() -> impl IntoView {
    let status = Resource::new_blocking(|| (), |_| two_factor_status());
    view! {
        <leptos_meta::Title text="Second factor · Admin · RSOLV" />
        <Suspense fallback=|| view! { <p class="text-sm">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match status.await {
                    Ok(view) => view! { <TwoFactorForm view /> }.into_any(),
                    Err(AppError::Unauthorized) => view! {
                        <AuthCard title="Two-factor sign-in">
                            <p class="mt-2" role="status">
                                "This sign-in has expired or is complete. "
                                <a href="/login" class=LINK_CLASS>"Sign in"</a> " again."
                            </p>
                        </AuthCard>
                    }
                    .into_any(),
                    Err(error) => view! {
                        <AuthCard title="Two-factor sign-in">
                            <p class="mt-2" role="alert">{error.to_string()}</p>
                        </AuthCard>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TwoFactorForm(view: TwoFactorView) -> impl IntoView {
    let action = ServerAction::<TwoFactorVerify>::new();
    let error = form_error(action.value());
    let done = move || action.value().get().and_then(Result::ok);
    let enrolling = view.enrolment.is_some();
    let title = if enrolling {
        "Set up two-factor sign-in"
    } else {
        "Two-factor sign-in"
    };
    let help = if enrolling {
        "The 6-digit code your authenticator app shows now."
    } else {
        "The 6-digit code from your authenticator app, or one of your recovery codes."
    };
    view! {
        <AuthCard title=title>
            <Show
                when=move || done().is_some_and(|d| !d.recovery_codes.is_empty())
                fallback=move || {
                    let enrolment = view.enrolment.clone();
                    view! {
                        <p class="mt-2 text-sm">{format!("Signing in as {}.", view.email)}</p>
                        {enrolment.map(|e| view! {
                            <div class="mt-4 space-y-2 text-sm" data-testid="totp-enrolment">
                                <p>"Staff admins sign in with a second factor. Add this account to an authenticator app (any app for TOTP codes) with the key below, then enter the code it shows."</p>
                                <p>"Key: " <code class="break-all font-mono" data-testid="totp-secret">{e.secret_base32}</code></p>
                                <p class="break-all text-xs text-slate-600 dark:text-slate-400">"Setup URL: " <code data-testid="totp-url">{e.otpauth_url}</code></p>
                            </div>
                        })}
                        <ActionForm action=action>
                            <div class="mt-4 space-y-4" data-testid="two-factor-form">
                                <Field id="two-factor-code" name="code" label="Code" kind="text" autocomplete="one-time-code" help=help />
                                <ErrorMessage message=Signal::derive(error) />
                                <SubmitButton pending=action.pending().into() label="Verify" pending_label="Verifying…" />
                            </div>
                        </ActionForm>
                    }
                }
            >
                {move || done().map(|d| view! {
                    <div class="mt-4 space-y-3 text-sm" data-testid="recovery-codes">
                        <p role="status">"Two-factor sign-in is set up. These recovery codes each sign you in once if you lose your authenticator. Store them somewhere safe now: they are not shown again."</p>
                        <ul class="grid grid-cols-2 gap-1 font-mono">
                            {d.recovery_codes.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
                        </ul>
                        <a href=d.next class=LINK_CLASS data-testid="two-factor-continue">"Continue to the console"</a>
                    </div>
                })}
            </Show>
        </AuthCard>
    }
}
