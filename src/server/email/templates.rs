//! The emails the platform sends, as pure functions from their facts to an
//! [`OutgoingEmail`] (plain text + HTML). Every interpolated value is plain
//! text: the HTML part is built from the same paragraphs with each one
//! HTML-escaped, so a customer's name such as `<b>` arrives as text.
//!
//! None of them carries an API key: a key is shown once, in the browser or
//! the API response that created it; an email is a copy that lives on in
//! mailboxes, backups and forwarding rules (see README § Email).

use crate::server::email::OutgoingEmail;
use chrono::{DateTime, Utc};

/// The `kind` column of each template.
pub mod kind {
    /// [`super::welcome`].
    pub const WELCOME: &str = "welcome";
    /// [`super::email_confirmation`].
    pub const EMAIL_CONFIRMATION: &str = "email_confirmation";
    /// [`super::password_reset`].
    pub const PASSWORD_RESET: &str = "password_reset";
    /// [`super::low_credit`].
    pub const LOW_CREDIT: &str = "low_credit";
    /// [`super::api_key_revoked`].
    pub const API_KEY_REVOKED: &str = "api_key_revoked";
    /// [`super::api_key_rotated`].
    pub const API_KEY_ROTATED: &str = "api_key_rotated";
    /// [`super::invite`].
    pub const INVITE: &str = "invite";
}

/// The customer dashboard's path.
pub const DASHBOARD_PATH: &str = "/dashboard";
/// Path of the email-confirmation page (`?token=`).
pub const CONFIRM_EMAIL_PATH: &str = "/confirm-email";
/// Path of the password-reset page (`?token=`).
pub const RESET_PASSWORD_PATH: &str = "/reset-password";
/// Path of the set-a-password page for invitations (`?token=`).
pub const ACCEPT_INVITE_PATH: &str = "/accept-invite";
/// How long a password-reset link stays valid, in minutes (stated in the
/// email; the auth code enforces it).
pub const PASSWORD_RESET_TTL_MINUTES: i64 = 60;

/// The public base URL (`PUBLIC_BASE_URL`) every link in an email starts
/// with: `http` or `https`, a host, an optional port and path, no query,
/// fragment or credentials; kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailLinks {
    base: String,
}

impl EmailLinks {
    /// Parses a base URL such as `https://app.rsolv.dev` or
    /// `http://127.0.0.1:3000/`.
    ///
    /// Errors: a sentence saying what is wrong (never echoing the value).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw.trim()).map_err(|_| "is not a URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with http:// or https://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
        })
    }

    /// Parses the site's public origin (`PUBLIC_BASE_URL`): the rules of
    /// [`EmailLinks::parse`] and no path either, e.g.
    /// `https://rsolv.example` or `http://127.0.0.1:3000/`. The origin is
    /// also what the CSRF check compares browsers' `Origin` with.
    ///
    /// Errors: a sentence saying what is wrong (never echoing the value).
    pub fn parse_origin(raw: &str) -> Result<Self, String> {
        let links = Self::parse(raw)?;
        match url::Url::parse(&links.base) {
            Ok(url) if url.path() == "/" => Ok(links),
            _ => Err(
                "must be an origin such as https://rsolv.example (scheme and host, no path)".into(),
            ),
        }
    }

    /// The base, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn page(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The absolute URL of `path` with `?token=<token>` (URL-encoded).
    /// The token is a secret: such links go into emails, never into logs.
    pub fn with_token(&self, path: &str, token: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        format!("{}{path}?token={encoded}", self.base)
    }
}

/// Who an email goes to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The customer it concerns, if any.
    pub customer_id: Option<i64>,
    /// Address.
    pub email: &'a str,
    /// Display name, used in the greeting.
    pub name: &'a str,
}

/// A link shown as a button in HTML and as `label: url` in text.
struct Action<'a> {
    label: &'a str,
    url: &'a str,
}

/// Renders the common layout: greeting, paragraphs, an optional action,
/// more paragraphs, signature.
fn render(
    kind: &'static str,
    to: &Recipient<'_>,
    subject: String,
    before: &[String],
    action: Option<Action<'_>>,
    after: &[String],
    idempotency_key: String,
) -> OutgoingEmail {
    let greeting = if to.name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", to.name.trim())
    };
    let signature = "— The RSOLV team";

    let mut text = format!("{greeting}\n\n");
    for p in before {
        text.push_str(p);
        text.push_str("\n\n");
    }
    if let Some(action) = &action {
        text.push_str(&format!("{}: {}\n\n", action.label, action.url));
    }
    for p in after {
        text.push_str(p);
        text.push_str("\n\n");
    }
    text.push_str(signature);
    text.push('\n');

    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5; color: #111827;\">\n<p>{}</p>\n",
        esc(&subject),
        esc(&greeting)
    );
    for p in before {
        html.push_str(&format!("<p>{}</p>\n", esc(p)));
    }
    if let Some(action) = &action {
        let href = html_escape::encode_double_quoted_attribute(action.url);
        html.push_str(&format!(
            "<p><a href=\"{href}\" style=\"display: inline-block; padding: 10px 16px; \
             background: #4f46e5; color: #ffffff; border-radius: 6px; text-decoration: none;\">{}</a></p>\n\
             <p style=\"font-size: 0.875em; color: #4b5563;\">Or open this address: {}</p>\n",
            esc(action.label),
            esc(action.url)
        ));
    }
    for p in after {
        html.push_str(&format!("<p>{}</p>\n", esc(p)));
    }
    html.push_str(&format!("<p>{}</p>\n</body></html>\n", esc(signature)));

    OutgoingEmail {
        customer_id: to.customer_id,
        kind,
        to: to.email.to_owned(),
        subject,
        text_body: text,
        html_body: html,
        idempotency_key,
    }
}

/// Welcome after sign-up, with a link to the dashboard. Deliberately
/// without the API key (shown once at sign-up). Conventional key:
/// `welcome:<customer id>`.
pub fn welcome(links: &EmailLinks, to: &Recipient<'_>, idempotency_key: String) -> OutgoingEmail {
    let dashboard = links.page(DASHBOARD_PATH);
    render(
        kind::WELCOME,
        to,
        "Welcome to RSOLV".into(),
        &[
            "Your RSOLV account is ready, with free fix credits to start: each credit pays for one fix the RSOLV Action opens as a pull request.".into(),
            "Your API key was shown once when you signed up. We never send keys by email: if you did not keep it, create a new one in the dashboard.".into(),
        ],
        Some(Action { label: "Open your dashboard", url: &dashboard }),
        &["If you did not sign up for RSOLV, you can ignore this email.".into()],
        idempotency_key,
    )
}

/// Asks the recipient to confirm their address by opening `confirm_link`
/// (built with [`EmailLinks::with_token`]).
pub fn email_confirmation(
    to: &Recipient<'_>,
    confirm_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    render(
        kind::EMAIL_CONFIRMATION,
        to,
        "Confirm your email address".into(),
        &["Please confirm that this is your email address for RSOLV.".into()],
        Some(Action {
            label: "Confirm my email address",
            url: confirm_link,
        }),
        &["If you did not create an RSOLV account, you can ignore this email.".into()],
        idempotency_key,
    )
}

/// A password-reset link (`reset_link`, built with
/// [`EmailLinks::with_token`]) that expires after
/// [`PASSWORD_RESET_TTL_MINUTES`].
pub fn password_reset(
    to: &Recipient<'_>,
    reset_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    render(
        kind::PASSWORD_RESET,
        to,
        "Reset your RSOLV password".into(),
        &["Someone (hopefully you) asked to reset the password of your RSOLV account.".into()],
        Some(Action {
            label: "Choose a new password",
            url: reset_link,
        }),
        &[
            format!(
                "This link expires in {} hour and works once.",
                PASSWORD_RESET_TTL_MINUTES / 60
            ),
            "If you did not ask for this, ignore this email: your password stays as it is.".into(),
        ],
        idempotency_key,
    )
}

/// Warns that the balance is down to `credits_left` credits. Conventional
/// key: `low_credit:<ledger entry id>` of the debit that left it there.
pub fn low_credit(
    links: &EmailLinks,
    to: &Recipient<'_>,
    credits_left: i64,
    idempotency_key: String,
) -> OutgoingEmail {
    let dashboard = links.page(DASHBOARD_PATH);
    let credits = if credits_left == 1 {
        "1 credit".to_owned()
    } else {
        format!("{credits_left} credits")
    };
    render(
        kind::LOW_CREDIT,
        to,
        format!("You have {credits} left"),
        &[
            format!("Your RSOLV balance is down to {credits}. Each fix the RSOLV Action deploys uses one."),
            "Add a payment method or choose a plan so that fixes keep coming when the credits run out.".into(),
        ],
        Some(Action { label: "Manage billing", url: &dashboard }),
        &[],
        idempotency_key,
    )
}

/// Tells the customer a key was revoked. `key_prefix` is the key's display
/// prefix (`rsolv_` + 6 characters), never the key.
pub fn api_key_revoked(
    links: &EmailLinks,
    to: &Recipient<'_>,
    key_name: &str,
    key_prefix: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let dashboard = links.page(DASHBOARD_PATH);
    render(
        kind::API_KEY_REVOKED,
        to,
        "An RSOLV API key was revoked".into(),
        &[
            format!("The API key \"{key_name}\" ({key_prefix}…) was revoked. Requests made with it are now refused."),
            "If you did not do this, create a new key and review your account's keys now.".into(),
        ],
        Some(Action { label: "Review your API keys", url: &dashboard }),
        &[],
        idempotency_key,
    )
}

/// Tells the customer a key was rotated: the old one keeps working until
/// `grace_ends_at`; the new one was shown once when it was made.
pub fn api_key_rotated(
    links: &EmailLinks,
    to: &Recipient<'_>,
    key_name: &str,
    old_prefix: &str,
    new_prefix: &str,
    grace_ends_at: DateTime<Utc>,
    idempotency_key: String,
) -> OutgoingEmail {
    let dashboard = links.page(DASHBOARD_PATH);
    let ends = grace_ends_at.format("%Y-%m-%d %H:%M UTC");
    render(
        kind::API_KEY_ROTATED,
        to,
        "Your RSOLV API key was rotated".into(),
        &[
            format!("The API key \"{key_name}\" was rotated: the new key starts with {new_prefix}…"),
            format!("The old key ({old_prefix}…) keeps working until {ends}. Update your GitHub secret (RSOLV_API_KEY) before then."),
        ],
        Some(Action { label: "Open your dashboard", url: &dashboard }),
        &["If you did not do this, revoke the new key and create another now.".into()],
        idempotency_key,
    )
}

/// Invites the recipient to set a password by opening `set_password_link`
/// (built with [`EmailLinks::with_token`]).
pub fn invite(
    to: &Recipient<'_>,
    set_password_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    render(
        kind::INVITE,
        to,
        "Set a password for your RSOLV account".into(),
        &[
            "An RSOLV account was created for you. Choose a password to sign in to the dashboard."
                .into(),
        ],
        Some(Action {
            label: "Set my password",
            url: set_password_link,
        }),
        &["If you were not expecting this, you can ignore this email.".into()],
        idempotency_key,
    )
}

// --- Billing (Stripe) ---------------------------------------------------------

/// `kind` of [`charge_declined`].
pub const KIND_CHARGE_DECLINED: &str = "charge_declined";
/// `kind` of [`subscription_payment_failed`].
pub const KIND_SUBSCRIPTION_PAYMENT_FAILED: &str = "subscription_payment_failed";
/// The portal's billing page (payment methods, plan, history).
pub const BILLING_PATH: &str = "/billing";

/// A pay-as-you-go card charge of `amount` (formatted, e.g. `$29.00`) was
/// declined with Stripe's `reason`; further fixes beyond the credits wait
/// for a working card. Conventional key: `charge_declined:<charge id>:<attempt>`.
pub fn charge_declined(
    links: &EmailLinks,
    to: &Recipient<'_>,
    amount: &str,
    reason: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let billing = links.page(BILLING_PATH);
    render(
        KIND_CHARGE_DECLINED,
        to,
        format!("Your card was declined for a {amount} fix"),
        &[
            format!("We could not charge {amount} for a fix the RSOLV Action deployed. Your bank said: {reason}"),
            "The fix is recorded and nothing is lost, but further fixes beyond your credits are paused until your card works again.".into(),
        ],
        Some(Action { label: "Update your payment method", url: &billing }),
        &["Once a working card is on file, we charge the unpaid fixes again and fixes resume.".into()],
        idempotency_key,
    )
}

/// A Pro subscription invoice of `amount` could not be paid: the
/// subscription is past due. Conventional key:
/// `invoice_payment_failed:<invoice id>:<attempt count>`.
pub fn subscription_payment_failed(
    links: &EmailLinks,
    to: &Recipient<'_>,
    amount: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let billing = links.page(BILLING_PATH);
    render(
        KIND_SUBSCRIPTION_PAYMENT_FAILED,
        to,
        format!("Payment of your RSOLV Pro invoice ({amount}) failed"),
        &[
            format!("We could not collect {amount} for your RSOLV Pro subscription, so it is past due."),
            "Stripe will try the payment again over the next days. If it keeps failing, the subscription ends and your account falls back to pay as you go.".into(),
        ],
        Some(Action { label: "Fix your payment method", url: &billing }),
        &[],
        idempotency_key,
    )
}

/// Email kind of [`dispute_opened`].
pub const KIND_DISPUTE_OPENED: &str = "dispute_opened";

/// To a staff admin: a customer disputed a charge of `amount` (Stripe's
/// `charge.dispute.created`, reason `reason`). Conventional key:
/// `dispute_opened:<dispute id>:<admin user id>`.
pub fn dispute_opened(
    links: &EmailLinks,
    to: &Recipient<'_>,
    customer_id: i64,
    customer_email: &str,
    amount: &str,
    reason: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let page = links.page(&format!("/admin/customers/{customer_id}"));
    render(
        KIND_DISPUTE_OPENED,
        to,
        format!("Dispute opened: {amount} by {customer_email}"),
        &[
            format!("The customer {customer_email} disputed a charge of {amount} with their bank (reason: {reason})."),
            "Answer it in the Stripe Dashboard with the evidence before its due date; the customer is flagged in the admin console meanwhile.".into(),
        ],
        Some(Action { label: "Open the customer", url: &page }),
        &[],
        idempotency_key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn links() -> EmailLinks {
        EmailLinks::parse("https://app.rsolv.dev/").unwrap()
    }

    const TO: Recipient<'static> = Recipient {
        customer_id: Some(7),
        email: "ada@example.com",
        name: "Ada <b>&</b> \"Co\"",
    };

    #[test]
    fn links_are_absolute_and_tokens_encoded() {
        let links = links();
        assert_eq!(links.base(), "https://app.rsolv.dev");
        assert_eq!(
            links.page(DASHBOARD_PATH),
            "https://app.rsolv.dev/dashboard"
        );
        assert_eq!(
            links.with_token(CONFIRM_EMAIL_PATH, "a+b/c=&d"),
            "https://app.rsolv.dev/confirm-email?token=a%2Bb%2Fc%3D%26d"
        );
        let sub = EmailLinks::parse("http://127.0.0.1:3000/app/").unwrap();
        assert_eq!(sub.page("/x"), "http://127.0.0.1:3000/app/x");
        for bad in [
            "",
            "app.rsolv.dev",
            "ftp://app.rsolv.dev",
            "https://app.rsolv.dev/?a=b",
            "https://app.rsolv.dev/#x",
            "https://user:pw@app.rsolv.dev",
        ] {
            assert!(EmailLinks::parse(bad).is_err(), "{bad}");
            assert!(EmailLinks::parse_origin(bad).is_err(), "{bad}");
        }
        assert!(EmailLinks::parse_origin("http://127.0.0.1:3000/app/").is_err());
        assert_eq!(
            EmailLinks::parse_origin("http://127.0.0.1:3000/")
                .unwrap()
                .base(),
            "http://127.0.0.1:3000"
        );
    }

    #[test]
    fn interpolations_are_escaped_in_html_and_plain_in_text() {
        let email = welcome(&links(), &TO, "welcome:7".into());
        assert!(email.text_body.starts_with("Hello Ada <b>&</b> \"Co\",\n"));
        assert!(email
            .html_body
            .contains("Hello Ada &lt;b&gt;&amp;&lt;/b&gt; \"Co\","));
        assert!(!email.html_body.contains("<b>"));
        let link = "https://app.rsolv.dev/set-password?token=a\"><script>&x=1";
        let invited = invite(&TO, link, "invite:1".into());
        assert!(invited.html_body.contains(
            "href=\"https://app.rsolv.dev/set-password?token=a&quot;&gt;&lt;script&gt;&amp;x=1\""
        ));
        assert!(!invited.html_body.contains("<script>"));
        assert!(invited.text_body.contains(link));
    }

    #[test]
    fn welcome_links_the_dashboard_and_carries_no_key() {
        let email = welcome(&links(), &TO, "welcome:7".into());
        assert_eq!(email.kind, kind::WELCOME);
        assert_eq!(email.to, "ada@example.com");
        assert_eq!(email.customer_id, Some(7));
        assert_eq!(email.idempotency_key, "welcome:7");
        assert_eq!(email.subject, "Welcome to RSOLV");
        for body in [&email.text_body, &email.html_body] {
            assert!(body.contains("https://app.rsolv.dev/dashboard"));
            assert!(!body.contains("rsolv_"), "no key or key prefix: {body}");
        }
    }

    #[test]
    fn token_emails_carry_their_link() {
        let links = links();
        let confirm = links.with_token(CONFIRM_EMAIL_PATH, "tok1");
        let reset = links.with_token(RESET_PASSWORD_PATH, "tok2");
        let set = links.with_token(ACCEPT_INVITE_PATH, "tok3");
        let cases = [
            (
                email_confirmation(&TO, &confirm, "c".into()),
                kind::EMAIL_CONFIRMATION,
                confirm.as_str(),
            ),
            (
                password_reset(&TO, &reset, "r".into()),
                kind::PASSWORD_RESET,
                reset.as_str(),
            ),
            (invite(&TO, &set, "i".into()), kind::INVITE, set.as_str()),
        ];
        for (email, kind, link) in cases {
            assert_eq!(email.kind, kind);
            assert!(email.text_body.contains(link), "{kind}");
            assert!(
                email.html_body.contains(&format!("href=\"{link}\"")),
                "{kind}"
            );
        }
        let reset_email = password_reset(&TO, &reset, "r".into());
        assert!(reset_email.text_body.contains("expires in 1 hour"));
        assert!(reset_email.html_body.contains("expires in 1 hour"));
    }

    #[test]
    fn low_credit_counts_credits() {
        let one = low_credit(&links(), &TO, 1, "low_credit:9".into());
        assert_eq!(one.kind, kind::LOW_CREDIT);
        assert_eq!(one.subject, "You have 1 credit left");
        assert!(one.text_body.contains("down to 1 credit."));
        assert_eq!(one.idempotency_key, "low_credit:9");
        let three = low_credit(&links(), &TO, 3, "k".into());
        assert_eq!(three.subject, "You have 3 credits left");
    }

    #[test]
    fn key_emails_show_prefixes_and_the_grace_period() {
        let revoked = api_key_revoked(&links(), &TO, "CI", "rsolv_abc123", "k1".into());
        assert_eq!(revoked.kind, kind::API_KEY_REVOKED);
        assert!(revoked
            .text_body
            .contains("\"CI\" (rsolv_abc123…) was revoked"));
        let ends = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        let rotated = api_key_rotated(
            &links(),
            &TO,
            "CI <prod>",
            "rsolv_old111",
            "rsolv_new222",
            ends,
            "k2".into(),
        );
        assert_eq!(rotated.kind, kind::API_KEY_ROTATED);
        assert!(rotated.text_body.contains("until 2026-12-01 09:30 UTC"));
        assert!(rotated.text_body.contains("rsolv_new222…"));
        assert!(rotated
            .html_body
            .contains("\"CI &lt;prod&gt;\" was rotated"));
        assert!(!rotated.html_body.contains("<prod>"));
    }
}
