//! The public base URL every link in an email starts with
//! (`PUBLIC_BASE_URL`), parsed with the configuration so that config stays a
//! leaf; the domain and the email integration import it from here.

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

#[cfg(test)]
mod tests {
    use super::*;

    const DASHBOARD_PATH: &str = "/dashboard";

    fn links() -> EmailLinks {
        EmailLinks::parse("https://app.rsolv.dev/").unwrap()
    }
    const CONFIRM_EMAIL_PATH: &str = "/confirm-email";

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
}
