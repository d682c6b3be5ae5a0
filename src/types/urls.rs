//! URLs from outside, parsed rather than trusted (issue 12, scope 1).
//!
//! - [`GitHubUrl`]: a link into GitHub (`https://github.com/<owner>/<repo>…`),
//!   the only shape stored where a field is a GitHub link (`pr_url`,
//!   `issue_url`, a mitigation's `prUrl`). Anything else is stored as absent:
//!   the fix is still recorded and billed, it just has no link.
//! - [`safe_href`]: the one check every `href` built from stored data goes
//!   through in `app/`: only an absolute `https://` URL with a plain host
//!   passes, so `javascript:`, `data:`, `vbscript:`, relative and
//!   protocol-relative links are never rendered.
//!
//! Both are hand-written over ASCII (no URL crate in the WASM bundle) and
//! deliberately strict: they accept the URLs GitHub and Stripe hand out and
//! nothing clever. Neither ever panics; both run in time linear in the input
//! and refuse inputs over [`MAX_URL_LEN`] bytes.

use serde::{Deserialize, Serialize};

/// Longest URL accepted, in bytes (the usual browser and proxy limit).
pub const MAX_URL_LEN: usize = 2048;

/// The host every [`GitHubUrl`] points at.
pub const GITHUB_HOST: &str = "github.com";

/// An `https://github.com/<owner>/<repo>[/<more path>][#fragment]` URL: no
/// query, no user info, no port, at least owner and repository path
/// segments, every segment non-empty and neither `.` nor `..`, path bytes
/// limited to `A-Z a-z 0-9 - . _ ~ %` (and `/` between segments), fragment
/// bytes to `A-Z a-z 0-9 - . _`. The scheme and host are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitHubUrl(String);

impl GitHubUrl {
    /// Parses `input` (surrounding whitespace is trimmed); `None` for
    /// anything that is not such a GitHub URL or is longer than
    /// [`MAX_URL_LEN`].
    pub fn parse(input: &str) -> Option<Self> {
        let input = input.trim();
        if input.len() > MAX_URL_LEN || !input.is_ascii() {
            return None;
        }
        let rest = strip_prefix_ignore_case(input, "https://")?;
        let rest = strip_prefix_ignore_case(rest, GITHUB_HOST)?;
        // The host ends at the first '/': "github.com.evil.net/…",
        // "github.com:443/…" and "github.com@evil/…" all fail here.
        let rest = rest.strip_prefix('/')?;
        let (path, fragment) = match rest.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (rest, None),
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = 0usize;
        for segment in path.split('/') {
            if segment.is_empty()
                || segment == "."
                || segment == ".."
                || !segment.bytes().all(is_path_byte)
            {
                return None;
            }
            segments += 1;
        }
        if segments < 2 {
            return None;
        }
        if let Some(fragment) = fragment {
            if fragment.is_empty() || !fragment.bytes().all(is_fragment_byte) {
                return None;
            }
        }
        let tail = &input["https://".len() + GITHUB_HOST.len()..];
        Some(Self(format!("https://{GITHUB_HOST}{tail}")))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its path segments after the host (owner, repository, then the rest).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = &self.0["https://".len() + GITHUB_HOST.len() + 1..];
        let path = rest.split('#').next().unwrap_or_default();
        path.split('/').filter(|s| !s.is_empty())
    }

    /// The pull request number when this is
    /// `https://github.com/<owner>/<repo>/pull/<n>[/…]` with `n ≥ 1`.
    pub fn pull_number(&self) -> Option<i64> {
        let mut segments = self.segments().skip(2);
        if segments.next()? != "pull" {
            return None;
        }
        segments.next()?.parse::<i64>().ok().filter(|n| *n > 0)
    }
}

impl From<GitHubUrl> for String {
    fn from(url: GitHubUrl) -> Self {
        url.0
    }
}

/// What an optional GitHub link field holds once parsed: the URL when it
/// parses as a [`GitHubUrl`], else `None` (stored as NULL).
pub fn github_link(input: Option<&str>) -> Option<String> {
    input.and_then(GitHubUrl::parse).map(String::from)
}

fn strip_prefix_ignore_case<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &input[prefix.len()..])
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
}

fn is_fragment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// The one gate for an `href` built from stored data: `Some(url)` when
/// `url` (trimmed) is an absolute `https://` URL of at most
/// [`MAX_URL_LEN`] bytes whose host is a plain DNS name (letters, digits,
/// `-` and `.`, optionally `:port`) followed by nothing, `/`, `?` or `#`,
/// and which holds no whitespace, control character, quote, `<`, `>`, `\`
/// or backtick anywhere; `None` otherwise, and the caller renders no link.
///
/// `javascript:`, `data:`, `vbscript:`, `http:`, relative, protocol-relative
/// (`//host`) and user-info (`https://a@b`) URLs are all refused.
pub fn safe_href(url: &str) -> Option<String> {
    let url = url.trim();
    if url.len() > MAX_URL_LEN
        || !url.is_ascii()
        || url.bytes().any(|b| {
            b.is_ascii_control()
                || b.is_ascii_whitespace()
                || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`')
        })
    {
        return None;
    }
    let rest = strip_prefix_ignore_case(url, "https://")?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with(['.', '-'])
        && !host.ends_with('-')
        && host.contains(|c: char| c.is_ascii_alphabetic())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then(|| url.to_owned())
}

/// The one gate for a `next=` redirect target (sign-in's return path):
/// `Some(path)` when `raw` (trimmed) is a local absolute path of at most
/// [`MAX_URL_LEN`] bytes: it starts with one `/` followed by anything but
/// `/` or `\\` (so never `//host` or `/\\host`, which browsers read as
/// another host), holds no `\\`, whitespace or control character (browsers
/// drop tabs and newlines, turning `/\t/host` into `//host`), and no
/// scheme can precede it since it starts with `/`. `None` otherwise, and
/// the caller uses its default page.
pub fn local_path(raw: &str) -> Option<String> {
    let path = raw.trim();
    let bytes = path.as_bytes();
    if path.is_empty()
        || path.len() > MAX_URL_LEN
        || !path.is_ascii()
        || bytes[0] != b'/'
        || matches!(bytes.get(1), Some(b'/' | b'\\'))
        || bytes
            .iter()
            .any(|b| b.is_ascii_control() || b.is_ascii_whitespace() || *b == b'\\')
    {
        return None;
    }
    Some(path.to_owned())
}

/// The sign-in page that leads back to `target` afterwards:
/// `/login?next=<target>`, where `target` is the page asked for (a local
/// path with its query, e.g. `/credits?kind=refund`) percent-encoded but
/// for unreserved characters and `/` (RFC 3986), so its `?`, `&` and `=`
/// stay inside the one `next` value. Sign-in follows `next` only through
/// [`local_path`].
pub fn sign_in_url(target: &str) -> String {
    format!("/login?next={}", encode_path(target))
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_path(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn github_links_parse_and_everything_else_is_absent() {
        for ok in [
            "https://github.com/acme/api/pull/42",
            "https://github.com/acme/api/issues/7",
            "https://GitHub.com/acme/api/pull/42/files",
            "  https://github.com/acme/api/pull/42#issuecomment-1  ",
            "https://github.com/acme/api",
            "https://github.com/acme/my.repo/pull/1/",
        ] {
            let url = GitHubUrl::parse(ok).unwrap_or_else(|| panic!("{ok}"));
            assert!(url.as_str().starts_with("https://github.com/"), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(document.cookie)//https://github.com/a/b",
            "data:text/html,<script>alert(1)</script>",
            "http://github.com/acme/api/pull/1",
            "https://github.com.evil.example/acme/api",
            "https://github.com@evil.example/acme/api",
            "https://github.com:443/acme/api",
            "https://evil.example/github.com/acme/api",
            "//github.com/acme/api",
            "https://github.com/acme",
            "https://github.com/",
            "https://github.com/acme//api",
            "https://github.com/acme/../api",
            "https://github.com/acme/api?x=1",
            "https://github.com/acme/api/pull/1#a\"onmouseover=x",
            "https://github.com/acme/api pull",
            "https://github.com/acme/\u{00e9}",
            "",
        ] {
            assert_eq!(GitHubUrl::parse(bad), None, "{bad}");
        }
        let long = format!("https://github.com/acme/api/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(GitHubUrl::parse(&long), None);
        assert_eq!(
            github_link(Some("javascript:alert(1)")),
            None,
            "a bad link is stored as absent"
        );
    }

    #[test]
    fn pull_numbers_come_from_pull_links_only() {
        let n = |s: &str| GitHubUrl::parse(s).and_then(|u| u.pull_number());
        assert_eq!(n("https://github.com/acme/api/pull/42"), Some(42));
        assert_eq!(n("https://github.com/acme/api/pull/42/files"), Some(42));
        assert_eq!(n("https://github.com/acme/api/issues/42"), None);
        assert_eq!(n("https://github.com/acme/api/pull/0"), None);
        assert_eq!(n("https://github.com/acme/api/pull/x"), None);
    }

    #[test]
    fn safe_hrefs_are_https_with_a_plain_host() {
        for ok in [
            "https://github.com/acme/api/pull/1",
            "https://invoice.stripe.com/i/acct_1/test_abc?s=ap",
            "https://localhost:8443/x",
            "https://example.com",
        ] {
            assert_eq!(safe_href(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            " javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "vbscript:msgbox(1)",
            "http://example.com/",
            "//evil.example/",
            "/admin",
            "https://",
            "https://a@evil.example/",
            "https://evil.example\\@good.example/",
            "https://ex ample.com/",
            "https://example.com/\"onmouseover=\"x",
            "https://example.com:99999999/",
            "https://1.2.3.4/",
            "https://.example.com/",
        ] {
            assert_eq!(safe_href(bad), None, "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Garbage in: no panic, and anything that comes out is an https
        /// GitHub URL that also passes the href gate.
        #[test]
        fn github_url_parser_takes_garbage(input in ".{0,300}") {
            if let Some(url) = GitHubUrl::parse(&input) {
                prop_assert!(url.as_str().starts_with("https://github.com/"));
                prop_assert!(safe_href(url.as_str()).is_some());
                let _ = url.pull_number();
            }
            if let Some(href) = safe_href(&input) {
                prop_assert!(href.to_ascii_lowercase().starts_with("https://"));
            }
        }

        /// Near misses built from URL-ish pieces: still only https GitHub
        /// URLs come out.
        #[test]
        fn github_url_parser_takes_near_misses(
            scheme in prop::sample::select(vec!["https://", "http://", "HTTPS://", "javascript:", "//", ""]),
            host in prop::sample::select(vec!["github.com", "GITHUB.COM", "github.com.evil.io", "evil.io", "github.com:443", "a@github.com"]),
            path in "[a-z0-9/._%#?:@-]{0,40}",
        ) {
            let input = format!("{scheme}{host}/{path}");
            if let Some(url) = GitHubUrl::parse(&input) {
                prop_assert!(url.as_str().starts_with("https://github.com/"));
                prop_assert!(scheme.eq_ignore_ascii_case("https://"));
                prop_assert!(host.eq_ignore_ascii_case("github.com"));
            }
        }

        /// Every well-formed pull request link parses and keeps its number.
        #[test]
        fn pull_links_round_trip(owner in "[A-Za-z0-9-]{1,39}", repo in "[A-Za-z0-9._-]{1,40}", n in 1i64..1_000_000) {
            prop_assume!(repo != "." && repo != "..");
            let input = format!("https://github.com/{owner}/{repo}/pull/{n}");
            let url = GitHubUrl::parse(&input);
            prop_assert_eq!(url.as_ref().map(GitHubUrl::as_str), Some(input.as_str()));
            prop_assert_eq!(url.and_then(|u| u.pull_number()), Some(n));
        }
    }

    #[test]
    fn local_paths_only_for_next() {
        for ok in ["/admin", "/admin/customers/7?tab=keys", "/", "/dashboard#x"] {
            assert_eq!(local_path(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.example/admin",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/admin",
            "javascript:alert(1)",
            "admin",
            "/\t/evil.example",
            "/ad min",
            "/admin\\..\\x",
            "/caf\u{e9}",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(MAX_URL_LEN))), None);
    }

    #[test]
    fn sign_in_urls_keep_the_query_inside_next() {
        assert_eq!(sign_in_url("/dashboard"), "/login?next=/dashboard");
        assert_eq!(
            sign_in_url("/credits?kind=refund&page=2"),
            "/login?next=/credits%3Fkind%3Drefund%26page%3D2"
        );
        assert_eq!(sign_in_url("/a b#c%"), "/login?next=/a%20b%23c%25");
    }
}
