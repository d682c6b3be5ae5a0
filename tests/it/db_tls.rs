//! PostgreSQL over TLS (issue 11, scope 1): `sslmode` and `sslrootcert`
//! honoured by single connections, the pool and the migrations, checked
//! against the local server (Debian's PostgreSQL runs with TLS on, its
//! certificate self-signed) through `pg_stat_ssl`.

use crate::harness::TestDb;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::{build_pool, run_pending_migrations, DbTarget};

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

const OWN_SSL: &str =
    "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl";

/// Whether the connection `url` opens is encrypted, per the server.
async fn encrypted(url: &str) -> Result<bool, String> {
    let target = DbTarget::parse(url).map_err(|e| e.to_string())?;
    let mut conn = target.connect().await.map_err(|e| e.to_string())?;
    let row: Ssl = diesel::sql_query(OWN_SSL)
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.ssl)
}

fn with(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

/// The server's own certificate file (for a self-signed certificate, the
/// CA to trust), read over a plain connection.
async fn server_certificate(url: &str) -> String {
    let target = DbTarget::parse(&with(url, "sslmode=disable")).unwrap();
    let mut conn = target.connect().await.unwrap();
    let ssl: Setting = diesel::sql_query("SELECT current_setting('ssl') AS value")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        ssl.value, "on",
        "the test server must run with TLS on (Debian's PostgreSQL does)"
    );
    let file: Setting = diesel::sql_query("SELECT current_setting('ssl_cert_file') AS value")
        .get_result(&mut conn)
        .await
        .unwrap();
    let dir: Setting = diesel::sql_query("SELECT current_setting('data_directory') AS value")
        .get_result(&mut conn)
        .await
        .unwrap();
    if file.value.starts_with('/') {
        file.value
    } else {
        format!("{}/{}", dir.value, file.value)
    }
}

#[tokio::test]
async fn each_sslmode_does_what_it_says_and_pg_stat_ssl_agrees() {
    let db = TestDb::new().await;
    let cert = server_certificate(&db.url).await;
    let other_ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/other-ca.pem"
    );

    assert_eq!(
        encrypted(&with(&db.url, "sslmode=disable")).await,
        Ok(false)
    );
    // libpq's default, and ours: TLS when the server offers it.
    assert_eq!(encrypted(&db.url).await, Ok(true));
    assert_eq!(encrypted(&with(&db.url, "sslmode=prefer")).await, Ok(true));
    assert_eq!(encrypted(&with(&db.url, "sslmode=require")).await, Ok(true));
    // The certificate names a host, not 127.0.0.1: verify-ca ignores the
    // name and checks the chain.
    assert_eq!(
        encrypted(&with(
            &db.url,
            &format!("sslmode=verify-ca&sslrootcert={cert}")
        ))
        .await,
        Ok(true)
    );
    // require with a CA file checks the chain too (libpq's rule).
    let err = encrypted(&with(
        &db.url,
        &format!("sslmode=require&sslrootcert={other_ca}"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // A CA that did not sign the server's certificate: refused, and said so.
    let err = encrypted(&with(
        &db.url,
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Without sslrootcert, verify-ca trusts only the public roots.
    let err = encrypted(&with(&db.url, "sslmode=verify-ca"))
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // verify-full checks the name too: Debian's snakeoil certificate names
    // a DNS host, never the address 127.0.0.1.
    if db.url.contains("@127.0.0.1") {
        let err = encrypted(&with(
            &db.url,
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        ))
        .await
        .unwrap_err();
        assert!(
            err.contains("NotValidForName") || err.contains("not valid for name"),
            "{err}"
        );
    }
    // A missing CA file is named at parse time.
    let err = encrypted(&with(
        &db.url,
        "sslmode=verify-ca&sslrootcert=/nonexistent.pem",
    ))
    .await
    .unwrap_err();
    assert!(err.contains("/nonexistent.pem"), "{err}");
}

#[tokio::test]
async fn the_pool_and_the_migrations_connect_over_verified_tls() {
    let db = TestDb::empty().await;
    let cert = server_certificate(&db.url).await;
    let url = with(&db.url, &format!("sslmode=verify-ca&sslrootcert={cert}"));

    let applied = run_pending_migrations(&url)
        .await
        .expect("migrate over TLS");
    assert!(!applied.is_empty());

    let pool = build_pool(&url, 2, 5).unwrap();
    let mut conn = pool.get().await.unwrap();
    let row: Ssl = diesel::sql_query(OWN_SSL)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(row.ssl, "pooled connection is encrypted");
    // statement_timeout is still set on each new connection.
    let timeout: Setting =
        diesel::sql_query("SELECT current_setting('statement_timeout') AS value")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(timeout.value, "5s");

    // A pool whose CA does not match fails at connect time with the reason.
    let other_ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/other-ca.pem"
    );
    let bad = build_pool(
        &with(
            &db.url,
            &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        ),
        1,
        5,
    )
    .unwrap();
    let err = bad.get().await.err().expect("refused").to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");
}
