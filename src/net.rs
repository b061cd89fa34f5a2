//! Whether a host is this machine: the one network fact both the configuration (may the AppSecret
//! travel over plain http?) and the MySQL backend (is a clear-text link worth a warning?) need.

/// True when the URL's host, as an HTTP client parses it, is `localhost` or a loopback address.
/// The host is taken from the parsed authority, never from a prefix of the text: in
/// `http://127.0.0.1:80@evil.example` the host is `evil.example`.
pub fn is_loopback_url(url: &str) -> bool {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(is_loopback_host))
        .unwrap_or(false)
}

/// `localhost`, `127.x.x.x` or `::1` (with or without the URL's brackets).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection_uses_the_parsed_host() {
        for (url, local) in [
            ("http://127.0.0.1:9999", true),
            ("http://localhost:9999", true),
            ("http://LOCALHOST", true),
            ("http://[::1]:9999", true),
            ("http://127.8.9.10", true),
            ("https://api.weixin.qq.com", false),
            ("http://10.0.0.1", false),
            ("http://127.0.0.1:80@evil.example", false),
            ("http://localhost@evil.example:9999", false),
            ("http://127.0.0.1.evil.example", false),
            ("http://localhost.evil.example", false),
            ("http://[::2]:9999", false),
            ("not a url", false),
        ] {
            assert_eq!(
                is_loopback_url(url),
                local,
                "{url} should {}be loopback",
                if local { "" } else { "not " }
            );
        }
    }
}
