//! [`check_issuer_url`]: an OIDC issuer (or a URL it publishes) must be
//! HTTPS, except on a loopback address.

/// The issuer must be HTTPS, except on a loopback address (tests, demo).
pub fn check_issuer_url(issuer: &str) -> Result<(), String> {
    if issuer.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = issuer.strip_prefix("http://") else {
        return Err(format!(
            "auth.oidc.issuer {issuer:?} must be an https:// URL"
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "auth.oidc.issuer {issuer:?} must be https:// (plain http is only accepted on a loopback address)"
        ))
    }
}
