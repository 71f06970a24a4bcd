//! What looks like a secret, and masking the one kind that may appear in config: a password in
//! a repository URL. No message or quoted source line repeats a password.

/// `https://user:secret@host/x` → `https://user:***@host/x`, so no message repeats a password.
pub fn redact_url_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_string() };
    match rest.split_once('@').filter(|(userinfo, _)| !userinfo.contains('/')) {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => value.to_string(),
        },
        None => value.to_string(),
    }
}

/// Whether a variable name suggests a secret (which must not be written in plain text).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "PRIVATE_KEY", "API_KEY", "ACCESS_KEY"].iter().any(|s| upper.contains(s))
}
