//! AWS naming and format rules, one line per case: the value and the sentence it must give.

use vending::names;

fn check(rule: fn(&str) -> Result<(), String>, value: &str, expected: Result<(), &str>) {
    assert_eq!(rule(value), expected.map_err(str::to_string), "{value:?}");
}

#[test]
fn bucket_names() {
    check(names::bucket_name, "vend-acme-prod", Ok(()));
    check(names::bucket_name, "ab", Err("is 2 characters long; S3 allows 3 to 63"));
    check(names::bucket_name, "Vend-acme", Err("may contain only lowercase letters, digits, `.` and `-`"));
    check(names::bucket_name, "-vend", Err("must begin and end with a letter or digit"));
    check(names::bucket_name, "a..b", Err("must not contain `..`"));
    check(names::bucket_name, "192.168.5.4", Err("must not look like an IPv4 address"));
    check(names::bucket_name, "xn--abc", Err("must not start with `xn--`"));
    check(names::bucket_name, "data-s3alias", Err("must not end with `-s3alias`"));
}

#[test]
fn load_balancer_and_target_group_names() {
    check(names::elb_name, "acme-prod-tg", Ok(()));
    check(names::elb_name, &"a".repeat(33), Err("is 33 characters long; Elastic Load Balancing allows 1 to 32"));
    check(names::elb_name, "acme_prod", Err("may contain only letters, digits and `-`"));
    check(names::load_balancer_name, "internal-acme", Err("must not begin with `internal-`"));
}

#[test]
fn rds_rules() {
    check(names::rds_identifier, "acme-prod-db", Ok(()));
    check(names::rds_identifier, "1acme", Err("must start with a letter"));
    check(names::rds_identifier, "acme--db", Err("must not end with `-` or contain `--`"));
    check(names::rds_master_username, "acme_admin", Ok(()));
    check(names::rds_master_username, "a_very_long_username", Err("is 20 characters long; RDS allows 1 to 16"));
    check(names::backup_window, "23:45-00:15", Ok(()));
    check(names::backup_window, "03:00-03:29", Err("lasts 29 minutes; RDS needs at least 30"));
    check(names::backup_window, "3:00-3:30", Err("must look like `03:00-03:30` (hh24:mi-hh24:mi, UTC)"));
    check(names::maintenance_window, "sun:23:45-mon:00:15", Ok(()));
    check(names::maintenance_window, "sun:03:00-sun:03:29", Err("lasts 29 minutes; RDS needs at least 30"));
    check(
        names::maintenance_window,
        "03:00-03:30",
        Err("must look like `sun:05:00-sun:05:30` (ddd:hh24:mi-ddd:hh24:mi, UTC, days mon…sun)"),
    );
}

#[test]
fn backup_and_maintenance_windows_must_not_overlap() {
    assert!(names::windows_overlap("03:00-03:30", "tue:03:15-tue:03:45"));
    assert!(!names::windows_overlap("03:00-03:30", "tue:03:30-tue:04:00"));
    // Across midnight and across the end of the week.
    assert!(names::windows_overlap("23:45-00:15", "mon:00:00-mon:00:30"));
    assert!(names::windows_overlap("23:50-00:20", "sun:23:00-mon:00:00"));
    assert!(!names::windows_overlap("01:00-01:30", "sun:23:00-mon:00:30"));
}

#[test]
fn host_headers_and_matchers() {
    check(names::host_header, "*.apps.example.com", Ok(()));
    check(
        names::host_header,
        "shop.example.c0m",
        Err("must contain a `.` followed only by letters (a top-level domain)"),
    );
    check(names::http_matcher, "200,202", Ok(()));
    check(names::http_matcher, "200-299", Ok(()));
    check(names::http_matcher, "299-200", Err("has the range `299-200`, which runs backwards"));
    check(names::http_matcher, "500", Err("has 500, outside 200–499 (the codes an ALB health check accepts)"));
}

#[test]
fn arns_and_ids() {
    check(|v| names::arn(v, "acm"), "arn:aws:acm:eu-west-1:123456789012:certificate/abc", Ok(()));
    check(
        |v| names::arn(v, "acm"),
        "arn:aws:acm:eu-west-1:12345:certificate/abc",
        Err("has account `12345`; an account id is 12 digits"),
    );
    check(
        |v| names::arn(v, "acm"),
        "acm:certificate",
        Err("is not an ARN (`arn:aws:acm:<region>:<account>:<resource>`)"),
    );
    check(|v| names::resource_id(v, "sg"), "sg-0123abcd", Ok(()));
    check(|v| names::resource_id(v, "sg"), "sg-xyz", Err("must be `sg-` followed by hexadecimal digits"));
}

#[test]
fn certificate_coverage() {
    use vending::names::certificate_covers;
    assert!(certificate_covers("*.acme.example.com", "shop.acme.example.com"));
    assert!(!certificate_covers("*.acme.example.com", "acme.example.com"));
    assert!(!certificate_covers("*.acme.example.com", "a.b.acme.example.com"));
    assert!(certificate_covers("acme.example.com", "ACME.example.com"));
}

#[test]
fn host_patterns_overlap_when_one_host_matches_both() {
    use vending::names::hosts_overlap as overlap;
    assert!(overlap("*.apps.example.com", "shop.apps.example.com"));
    assert!(overlap("shop.apps.example.com", "*.apps.example.com"));
    assert!(overlap("SHOP.apps.example.com", "shop.apps.example.com"));
    assert!(overlap("shop-*.example.com", "*-eu.example.com"));
    assert!(overlap("sh?p.example.com", "shop.example.com"));
    assert!(!overlap("*.apps.example.com", "apps.example.com"));
    assert!(!overlap("sh?p.example.com", "shoop.example.com"));
    assert!(!overlap("shop-*.example.com", "web-*.example.com"));
    assert!(!overlap("*.acme.example.com", "*.globex.example.com"));
}
