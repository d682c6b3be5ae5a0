//! Navigation (issue 14, item 4): signed-out visits to the portal and the
//! account page are sent to sign in and come back after it (with and
//! without JavaScript); signed-in visitors are not offered sign-up or
//! sign-in again; closed signups and the approval queue are said before
//! the form is filled. The `/admin…` pages' redirects are in
//! `admin_security.rs`.

use crate::authz::{signed_in, PASSWORD};
use crate::harness::{email, TestApp};
use rsolv_platform::server::auth::lifetime::SIGNED_IN_PAGES;

/// The value of the sign-in form's hidden `next` field in a rendered
/// `/login` page (HTML entities of `&` undone).
fn hidden_next(html: &str) -> String {
    let marker = r#"name="next" value=""#;
    let start = html.find(marker).expect("the hidden next field") + marker.len();
    let end = html[start..].find('"').expect("its end") + start;
    html[start..end].replace("&amp;", "&")
}

/// A no-JavaScript sign-in: the login form posted as a browser does
/// (`Accept: text/html`, same origin); status and `Location`.
async fn post_login_form(
    app: &TestApp,
    browser: &reqwest::Client,
    fields: &[(&str, &str)],
) -> (u16, Option<String>) {
    let response = browser
        .post(app.url("/api/login"))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location)
}

/// Whether `testid` is in `html` rendered in place (not in an out-of-order
/// chunk that needs a script to show).
fn rendered_in_place(html: &str, testid: &str) -> bool {
    html.find(&format!(r#"data-testid="{testid}""#))
        .is_some_and(|at| !html[..at].contains("<template"))
}

/// The opening tag of the element with `data-testid="<testid>"`.
fn tag_with<'a>(html: &'a str, testid: &str) -> &'a str {
    let at = html
        .find(&format!(r#"data-testid="{testid}""#))
        .unwrap_or_else(|| panic!("{testid} in {html}"));
    let start = html[..at].rfind('<').expect("its tag");
    let end = html[at..].find('>').expect("its end") + at;
    &html[start..=end]
}

#[tokio::test]
async fn signed_out_visits_to_protected_pages_redirect_to_sign_in() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    for page in SIGNED_IN_PAGES {
        let (status, location, body) = app.page(&browser, page).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some(format!("/login?next={page}").as_str())),
            "{page}"
        );
        assert!(!body.contains("sign-in-required"), "{page}: no frame");
        let head = browser.head(app.url(page)).send().await.unwrap();
        assert_eq!(head.status().as_u16(), 303, "HEAD {page}");
    }
    // The query comes back too, encoded inside the one `next` value.
    for (page, next) in [
        (
            "/credits?kind=fix_consumed&page=2",
            "/credits%3Fkind%3Dfix_consumed%26page%3D2",
        ),
        ("/keys?confirm_revoke=1", "/keys%3Fconfirm_revoke%3D1"),
        ("/billing/history", "/billing/history"),
    ] {
        let (status, location, _) = app.page(&browser, page).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(location, Some(format!("/login?next={next}")), "{page}");
    }
    // Public pages are untouched.
    for page in ["/", "/login", "/register", "/forgot-password", "/signup"] {
        let (status, location, _) = app.page(&browser, page).await;
        assert_eq!((status, location), (200, None), "{page}");
    }
    // Not a guarded page: a path that merely starts like one.
    let (status, _, _) = app.page(&browser, "/dashboards").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sign_in_without_javascript_returns_to_the_page_asked_for() {
    let app = TestApp::spawn().await;
    let customer = signed_in(&app, &email("nav-return"), "Returning").await;
    let browser = app.browser();
    let asked = "/credits?kind=signup_bonus&page=1";
    let (status, location, _) = app.page(&browser, asked).await;
    assert_eq!(status, 303);
    let login_page = location.unwrap();
    // The sign-in page carries the destination in its form.
    let (status, _, html) = app.page(&browser, &login_page).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-testid="login-form""#), "{html}");
    let next = hidden_next(&html);
    assert_eq!(next, asked);

    // A wrong password goes back to the form, still leading there.
    let (status, location) = post_login_form(
        &app,
        &browser,
        &[
            ("email", &customer.email),
            ("password", "not the password at all"),
            ("next", &next),
        ],
    )
    .await;
    assert_eq!(status, 302);
    let again = location.unwrap();
    assert!(
        again.starts_with(&format!("{login_page}&error=")),
        "{again}"
    );
    let (status, _, html) = app.page(&browser, &again).await;
    assert_eq!(status, 200);
    assert!(html.contains("incorrect email or password"), "{html}");
    assert_eq!(hidden_next(&html), asked);

    // The right one lands on the page asked for, which now renders.
    let (status, location) = post_login_form(
        &app,
        &browser,
        &[
            ("email", &customer.email),
            ("password", PASSWORD),
            ("next", &next),
        ],
    )
    .await;
    assert_eq!((status, location.as_deref()), (302, Some(asked)));
    let (status, location, html) = app.page(&browser, asked).await;
    assert_eq!((status, location), (200, None));
    assert!(rendered_in_place(&html, "ledger-row"), "{html}");
    assert!(!html.contains("sign-in-required"));

    // With JavaScript (the server function's answer) the same.
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "login",
            &[
                ("email", &customer.email),
                ("password", PASSWORD),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (200, Some("/account")),
        "{body}"
    );
}

#[tokio::test]
async fn signed_in_visitors_skip_sign_in_and_sign_up() {
    let app = TestApp::spawn().await;
    let customer = signed_in(&app, &email("nav-signed-in"), "Signed In").await;
    let browser = &customer.browser;
    // Every protected page renders for them.
    for page in SIGNED_IN_PAGES {
        let (status, location, _) = app.page(browser, page).await;
        assert_eq!((status, location), (200, None), "{page}");
    }
    // `/login` sends them on: to a local `next`, else their dashboard.
    for (page, to) in [
        ("/login", "/dashboard"),
        ("/login?notice=confirmed", "/dashboard"),
        (
            "/login?next=/credits%3Fkind%3Drefund",
            "/credits?kind=refund",
        ),
        ("/login?next=//evil.example/x", "/dashboard"),
        ("/login?next=https://evil.example/", "/dashboard"),
    ] {
        let (status, location, _) = app.page(browser, page).await;
        assert_eq!((status, location.as_deref()), (303, Some(to)), "{page}");
    }
    // The home page and /register offer the dashboard, not a signup form,
    // in the server-rendered HTML.
    for page in ["/", "/register", "/signup"] {
        let (status, _, html) = app.page(browser, page).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            rendered_in_place(&html, "signed-in-panel"),
            "{page}: {html}"
        );
        assert!(html.contains(&customer.email), "{page}");
        let link = tag_with(&html, "signed-in-home");
        assert!(link.contains(r#"href="/dashboard""#), "{page}: {link}");
        assert!(html.contains("Go to your dashboard"), "{page}");
        assert!(!html.contains(r#"data-testid="signup-form""#), "{page}");
        assert!(!html.contains(r#"data-testid="register-form""#), "{page}");
    }
    // After signing out, the forms are back.
    let (status, _, _) = app.server_fn(browser, "logout", &[]).await;
    assert_eq!(status, 200);
    let (_, _, html) = app.page(browser, "/").await;
    assert!(rendered_in_place(&html, "signup-form"), "{html}");
    let (_, _, html) = app.page(browser, "/register").await;
    assert!(rendered_in_place(&html, "signup-form"), "{html}");
    let (status, _, _) = app.page(browser, "/login").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn staff_admins_keep_their_portal_answers_and_finish_sign_in_first() {
    let app = TestApp::spawn().await;
    let address = email("nav-admin");
    let admin = app.admin_browser(&address).await;
    // Not sent to sign in: the portal answers them as before (its own
    // refusal), and the account page is theirs.
    let (status, location, html) = app.page(&admin, "/dashboard").await;
    assert_ne!(status, 303);
    assert_eq!(location, None);
    assert!(!html.contains("sign-in-required"), "{html}");
    let (status, _, html) = app.page(&admin, "/account").await;
    assert_eq!(status, 200);
    assert!(html.contains(&address), "{html}");
    // Signed in: `/login` leads to the console; the home page links it.
    let (status, location, _) = app.page(&admin, "/login").await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin")));
    let (_, _, html) = app.page(&admin, "/").await;
    assert!(rendered_in_place(&html, "signed-in-panel"), "{html}");
    assert!(tag_with(&html, "signed-in-home").contains(r#"href="/admin""#));
    assert!(html.contains("Go to the admin console"), "{html}");

    // Half-way through sign-in (password given, second factor not yet):
    // the portal's pages send them to the second factor.
    let pending = app.admin_password_step(&address).await;
    for page in ["/dashboard", "/account"] {
        let (status, location, _) = app.page(&pending, page).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/admin/2fa")),
            "{page}"
        );
    }
}

/// Switches `key` with the admin console's flag function.
async fn set_flag(app: &TestApp, admin: &reqwest::Client, key: &str, on: bool) {
    let (status, body) = app
        .admin_fn(
            admin,
            "flags/set",
            &[
                ("key", key),
                ("enabled", if on { "true" } else { "false" }),
                ("reason", "navigation test"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn closed_signups_and_the_approval_queue_are_said_before_the_form() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("nav-flags-admin")).await;
    let visitor = app.browser();
    let mode = async || {
        let (status, _, body) = app.server_fn(&app.browser(), "signup_mode", &[]).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    assert_eq!(mode().await, r#""open""#);
    for page in ["/", "/register"] {
        let (_, _, html) = app.page(&visitor, page).await;
        assert!(!html.contains("signups-closed"), "{page}");
        assert!(!html.contains("signups-need-approval"), "{page}");
    }

    set_flag(&app, &admin, "signups_enabled", false).await;
    assert_eq!(mode().await, r#""closed""#);
    for (page, form) in [("/", "signup-form"), ("/register", "signup-form")] {
        let (status, _, html) = app.page(&visitor, page).await;
        assert_eq!(status, 200, "{page}");
        assert!(rendered_in_place(&html, "signups-closed"), "{page}: {html}");
        assert!(
            html.contains("Signups are closed")
                && html.contains("We are not taking new accounts at the moment"),
            "{page}: {html}"
        );
        assert!(
            !html.contains(&format!(r#"data-testid="{form}""#)),
            "{page}"
        );
    }
    // The server still refuses, as before.
    let response = visitor
        .post(app.url("/signup"))
        .form(&[("email", email("nav-closed").as_str()), ("name", "Closed")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let (status, _, body) = app
        .server_fn(
            &visitor,
            "register",
            &[
                ("email", &email("nav-closed-r")),
                ("name", "Closed"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.count("customers").await, 0);

    // Open again, but every signup waits for approval: said above the form.
    set_flag(&app, &admin, "signups_enabled", true).await;
    set_flag(&app, &admin, "auto_provision", false).await;
    assert_eq!(mode().await, r#""approval""#);
    for (page, form) in [("/", "signup-form"), ("/register", "signup-form")] {
        let (status, _, html) = app.page(&visitor, page).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            rendered_in_place(&html, "signups-need-approval"),
            "{page}: {html}"
        );
        assert!(
            html.contains("your account waits for approval"),
            "{page}: {html}"
        );
        assert!(rendered_in_place(&html, form), "{page}: {html}");
        let note = html.find("signups-need-approval").unwrap();
        let form_at = html.find(&format!(r#"data-testid="{form}""#)).unwrap();
        assert!(note < form_at, "{page}: said before the form");
    }
}

#[tokio::test]
async fn the_home_page_and_register_offer_one_signup_that_works_without_javascript() {
    let app = TestApp::spawn().await;
    let visitor = app.browser();
    // The same form on both pages: email and name, no password (it is set
    // from the mailed link, whose page shows the first key); each posts to
    // its own page without JavaScript.
    for (page, action) in [("/", "/signup"), ("/register", "/register")] {
        let (status, _, html) = app.page(&visitor, page).await;
        assert_eq!(status, 200, "{page}");
        let form = tag_with(&html, "signup-form");
        assert!(
            form.contains(&format!(r#"action="{action}""#)),
            "{page}: {form}"
        );
        assert!(!html.contains(r#"type="password""#), "{page}: {html}");
        assert!(!html.contains("register-form"), "{page}");
        assert!(
            html.contains("We email you a link to set your password"),
            "{page}"
        );
    }
    // `POST /register` signs up like `POST /signup` and answers with the
    // /register page saying what the email holds.
    let address = email("nav-one-story");
    let response = visitor
        .post(app.url("/register"))
        .form(&[("email", address.as_str()), ("name", "One Story")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.unwrap();
    assert!(rendered_in_place(&html, "signup-check-email"), "{html}");
    assert!(html.contains("Create your account · RSOLV"), "{html}");
    assert!(html.contains(&address), "{html}");
    assert_eq!(app.count("customers").await, 1);
    // Invalid input: the page again, with the error, and nothing written.
    let response = visitor
        .post(app.url("/register"))
        .form(&[("email", "not-an-email"), ("name", "Bad")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let html = response.text().await.unwrap();
    assert!(rendered_in_place(&html, "signup-form"), "{html}");
    assert!(html.contains(r#"role="alert""#), "{html}");
    assert_eq!(app.count("customers").await, 1);
}
