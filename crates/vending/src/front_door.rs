//! How an Application Load Balancer's listener answers a request, as the local front door plays
//! it: the rules in priority order, each matching on the host name (ALB's host-header condition:
//! case-insensitive, `*` and `?` wildcards, the port left out), then the listener's default
//! action. A forward picks one of the target group's registered targets in turn; what the target
//! answers is the target's business. Pure: the caller reads the listener and the targets.

use crate::plan::ListenerAction;

/// A listener's rules (the default rule aside), as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    /// The host-header condition's values (empty: the rule has no host condition).
    pub hosts: Vec<String>,
    /// Another condition the front door does not evaluate (path, header, …): such a rule never
    /// matches here (the tool makes none).
    pub other_conditions: bool,
    pub action: ListenerAction,
}

/// One listener: its protocol, rules and default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub load_balancer: String,
    pub port: u16,
    pub protocol: String,
    pub rules: Vec<Rule>,
    pub default_action: ListenerAction,
}

/// What the listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Fixed {
        status: u16,
        content_type: String,
        body: String,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// To the target group with this ARN.
    Forward(String),
}

/// The host name of a Host header: without its port, lower case (`[::1]:80` keeps its brackets).
pub fn host_name(header: &str) -> String {
    let header = header.trim();
    let name = match header.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => header,
    };
    name.to_ascii_lowercase()
}

/// ALB's host-header match: case-insensitive, `*` any run of characters, `?` exactly one.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    fn matches(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&pattern[1..], text) || (!text.is_empty() && matches(pattern, &text[1..])),
            (Some(b'?'), Some(_)) => matches(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => matches(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), host.as_bytes())
}

/// The listener's answer to a request for `host` (a Host header) and `path` (with its query).
pub fn route(listener: &Listener, host: &str, path: &str) -> Answer {
    let name = host_name(host);
    let mut rules: Vec<&Rule> = listener.rules.iter().collect();
    rules.sort_by_key(|rule| rule.priority);
    let action = rules
        .into_iter()
        .find(|rule| !rule.other_conditions && rule.hosts.iter().any(|pattern| host_matches(pattern, &name)))
        .map_or(&listener.default_action, |rule| &rule.action);
    answer(listener, action, &name, path)
}

fn answer(listener: &Listener, action: &ListenerAction, host: &str, path: &str) -> Answer {
    match action {
        ListenerAction::Forward(arn) => Answer::Forward(arn.clone()),
        ListenerAction::FixedResponse { status, content_type, body } => Answer::Fixed {
            status: status.parse().unwrap_or(503),
            content_type: content_type.clone(),
            body: body.clone(),
        },
        ListenerAction::Redirect { protocol, port, permanent } => {
            // The tool's redirects keep host, path and query: #{host}, /#{path}, #{query}.
            let protocol = if protocol == "#{protocol}" { listener.protocol.as_str() } else { protocol.as_str() };
            let port = if port == "#{port}" { listener.port.to_string() } else { port.clone() };
            let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
            Answer::Redirect {
                status: if *permanent { 301 } else { 302 },
                location: format!("{}://{host}:{port}{path}", protocol.to_ascii_lowercase()),
            }
        }
        ListenerAction::Other(kind) => Answer::Fixed {
            status: 501,
            content_type: "text/plain".into(),
            body: format!("the local front door does not play `{kind}` actions"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> Listener {
        let forward = |arn: &str| ListenerAction::Forward(arn.into());
        Listener {
            load_balancer: "vend-shared".into(),
            port: 443,
            protocol: "HTTPS".into(),
            rules: vec![
                Rule {
                    priority: 20,
                    hosts: vec!["*.example.com".into()],
                    other_conditions: false,
                    action: forward("wild"),
                },
                Rule {
                    priority: 10,
                    hosts: vec!["shop.acme.example.com".into()],
                    other_conditions: false,
                    action: forward("acme"),
                },
                Rule {
                    priority: 5,
                    hosts: vec!["shop.acme.example.com".into()],
                    other_conditions: true,
                    action: forward("x"),
                },
            ],
            default_action: ListenerAction::host_not_found(),
        }
    }

    #[test]
    fn rules_in_priority_order_then_the_default() {
        let l = listener();
        assert_eq!(route(&l, "Shop.Acme.example.com:8443", "/"), Answer::Forward("acme".into()));
        assert_eq!(route(&l, "www.example.com", "/"), Answer::Forward("wild".into()));
        assert_eq!(
            route(&l, "nowhere.test", "/"),
            Answer::Fixed { status: 503, content_type: "text/plain".into(), body: "host not found".into() }
        );
    }

    #[test]
    fn redirect_keeps_host_path_and_query() {
        let mut l = listener();
        l.port = 80;
        l.default_action = ListenerAction::Redirect { protocol: "HTTPS".into(), port: "443".into(), permanent: true };
        l.rules.clear();
        assert_eq!(
            route(&l, "shop.acme.example.com", "/cart?id=1"),
            Answer::Redirect { status: 301, location: "https://shop.acme.example.com:443/cart?id=1".into() }
        );
    }

    #[test]
    fn wildcards_and_ports() {
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(host_matches("shop?.example.com", "shop1.example.com"));
        assert!(!host_matches("shop?.example.com", "shop.example.com"));
        assert_eq!(host_name("Example.COM:80"), "example.com");
        assert_eq!(host_name("[::1]:80"), "[::1]");
    }
}
