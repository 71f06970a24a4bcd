//! AWS naming rules, checked before any API call, and the names the tool derives from
//! customer and environment. Each rule returns what is wrong in a sentence, or `Ok`.

/// Resource names the tool derives for one customer environment. They are deterministic: the
/// same config always gives the same names, which is how later runs find what earlier runs made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceNames {
    pub bucket: String,
    pub target_group: String,
    pub load_balancer: String,
    pub launch_template: String,
    pub auto_scaling_group: String,
    pub database: String,
    pub codedeploy_application: String,
    pub deployment_group: String,
    pub ami_name_prefix: String,
    /// The customer's SNS topic for approval requests (one for all its environments).
    pub approval_topic: String,
    /// The environment's CodeBuild project (CodeBuild's rule: 2–150 of `[A-Za-z0-9_-]`).
    pub codebuild_project: String,
    /// Where its builds log: CodeBuild's own default group name for the project.
    pub build_log_group: String,
}

/// The SNS topic that carries a customer's (or, named `platform`, the platform's) approval
/// requests. Customer names cannot collide with it: they are at most 24 characters of
/// `[a-z0-9-]`, and the platform's topic is told apart by being built from `_platform`.
pub fn approval_topic(prefix: &str, customer: &str) -> String {
    format!("{prefix}-{customer}-approvals")
}

/// A naming rule: `Err` says why the name is refused.
pub type Rule = fn(&str) -> Result<(), String>;

impl ResourceNames {
    pub fn derive(prefix: &str, customer: &str, env: &str, database: Option<&str>) -> ResourceNames {
        let stem = format!("{customer}-{env}");
        ResourceNames {
            bucket: format!("{prefix}-{stem}"),
            target_group: format!("{stem}-tg"),
            load_balancer: format!("{stem}-alb"),
            launch_template: stem.clone(),
            auto_scaling_group: stem.clone(),
            database: database.map_or_else(|| format!("{stem}-db"), str::to_string),
            codedeploy_application: customer.to_string(),
            approval_topic: approval_topic(prefix, customer),
            deployment_group: stem.clone(),
            codebuild_project: stem.clone(),
            build_log_group: format!("/aws/codebuild/{stem}"),
            ami_name_prefix: stem,
        }
    }

    /// Every name with its kind and rule, for the per-environment and fleet-wide checks.
    pub fn checks(&self, dedicated_alb: bool, has_database: bool) -> Vec<(&'static str, &str, Rule)> {
        let mut checks: Vec<(&'static str, &str, Rule)> = vec![
            ("S3 bucket", &self.bucket, bucket_name),
            ("target group", &self.target_group, elb_name),
            ("launch template", &self.launch_template, launch_template_name),
            ("Auto Scaling group", &self.auto_scaling_group, asg_name),
            ("CodeDeploy application", &self.codedeploy_application, codedeploy_name),
            ("CodeDeploy deployment group", &self.deployment_group, codedeploy_name),
            ("AMI name", &self.ami_name_prefix, ami_name_prefix),
        ];
        if dedicated_alb {
            checks.push(("load balancer", &self.load_balancer, load_balancer_name));
        }
        if has_database {
            checks.push(("RDS DB identifier", &self.database, rds_identifier));
        }
        checks
    }
}

/// Customer directory names and environment file stems: they go into every resource name, so
/// they are held to the strictest common alphabet.
pub fn customer_or_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 24 {
        return Err(format!("must be 1 to 24 characters long, not {}", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("may contain only lowercase letters, digits and `-`".into());
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter".into());
    }
    if name.ends_with('-') || name.contains("--") {
        return Err("must not end with `-` or contain `--`".into());
    }
    Ok(())
}

pub fn bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!("is {} characters long; S3 allows 3 to 63", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err("may contain only lowercase letters, digits, `.` and `-`".into());
    }
    let first_last_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !first_last_ok(name.as_bytes()[0]) || !first_last_ok(name.as_bytes()[name.len() - 1]) {
        return Err("must begin and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("must not contain `..`".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not look like an IPv4 address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("must not start with `{prefix}`"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3", "-an"] {
        if name.ends_with(suffix) {
            return Err(format!("must not end with `{suffix}`"));
        }
    }
    Ok(())
}

/// Target groups: at most 32 alphanumerics and hyphens, not starting or ending with `-`.
pub fn elb_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!("is {} characters long; Elastic Load Balancing allows 1 to 32", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may contain only letters, digits and `-`".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not begin or end with `-`".into());
    }
    Ok(())
}

pub fn load_balancer_name(name: &str) -> Result<(), String> {
    elb_name(name)?;
    if name.starts_with("internal-") {
        return Err("must not begin with `internal-`".into());
    }
    Ok(())
}

pub fn launch_template_name(name: &str) -> Result<(), String> {
    if !(3..=128).contains(&name.len()) {
        return Err(format!("is {} characters long; launch templates allow 3 to 128", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"().-/_".contains(&b)) {
        return Err("may contain only letters, digits and `( ) . - / _`".into());
    }
    Ok(())
}

pub fn asg_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("is {} characters long; Auto Scaling allows 1 to 255", name.len()));
    }
    if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err("may contain only printable ASCII without spaces or `:`".into());
    }
    Ok(())
}

pub fn codedeploy_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!("is {} characters long; CodeDeploy allows 1 to 100", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+=,@-".contains(&b)) {
        return Err("may contain only letters, digits and `. _ + = , @ -`".into());
    }
    Ok(())
}

/// The AMI name is `<prefix>-<14-digit timestamp>`; the whole must fit EC2's 128 characters.
pub fn ami_name_prefix(name: &str) -> Result<(), String> {
    let full = name.len() + 15;
    if full > 128 {
        return Err(format!("gives AMI names of {full} characters; EC2 allows at most 128"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"()[] ./-'@_".contains(&b)) {
        return Err("may contain only letters, digits, spaces and `( ) [ ] . / - ' @ _`".into());
    }
    Ok(())
}

pub fn rds_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("is {} characters long; RDS allows 1 to 63", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may contain only letters, digits and `-`".into());
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Err("must start with a letter".into());
    }
    if name.ends_with('-') || name.contains("--") {
        return Err("must not end with `-` or contain `--`".into());
    }
    Ok(())
}

pub fn rds_master_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 16 {
        return Err(format!("is {} characters long; RDS allows 1 to 16", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("may contain only letters, digits and `_`".into());
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Err("must start with a letter".into());
    }
    if ["rdsadmin", "admin", "postgres", "root", "mysql"].contains(&name.to_ascii_lowercase().as_str()) {
        return Err("is reserved by RDS or the engine".into());
    }
    Ok(())
}

/// An ALB host-header value: ≤128 characters of letters, digits, `-`, `.`, `*`, `?`, with a `.`
/// and only letters after the last `.`.
pub fn host_header(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 128 {
        return Err(format!("is {} characters long; ALB host conditions allow 1 to 128", host.len()));
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.*?".contains(&b)) {
        return Err("may contain only letters, digits, `-`, `.` and the wildcards `*` and `?`".into());
    }
    match host.rsplit_once('.') {
        Some((_, tld)) if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_alphabetic()) => Ok(()),
        _ => Err("must contain a `.` followed only by letters (a top-level domain)".into()),
    }
}

/// A DNS name for a custom domain: labels of letters, digits and `-`, no wildcard.
pub fn domain_name(name: &str) -> Result<(), String> {
    host_header(name)?;
    if name.contains(['*', '?']) {
        return Err("must be a plain domain name without wildcards".into());
    }
    Ok(())
}

/// `arn:partition:service:region:account:resource`, with the expected service.
pub fn arn(value: &str, service: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return Err(format!("is not an ARN (`arn:aws:{service}:<region>:<account>:<resource>`)"));
    }
    if !matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov" | "aws-eusc" | "aws-iso" | "aws-iso-b") {
        return Err(format!("has an unknown partition `{}`", parts[1]));
    }
    if parts[2] != service {
        return Err(format!("is an ARN of `{}`, not of `{service}`", parts[2]));
    }
    if !parts[4].is_empty() && (parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("has account `{}`; an account id is 12 digits", parts[4]));
    }
    if parts[5].is_empty() {
        return Err("has no resource part".into());
    }
    Ok(())
}

/// `hh24:mi-hh24:mi`, UTC, at least 30 minutes (RDS `PreferredBackupWindow`).
pub fn backup_window(value: &str) -> Result<(), String> {
    window_minutes(value, false).map(|_| ())
}

/// `ddd:hh24:mi-ddd:hh24:mi`, UTC, at least 30 minutes (RDS `PreferredMaintenanceWindow`).
pub fn maintenance_window(value: &str) -> Result<(), String> {
    window_minutes(value, true).map(|_| ())
}

const WEEK: u32 = 7 * 24 * 60;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A window as minutes of the week, `(start, end)`: a daily one (`03:00-03:30`) is placed on
/// Monday and compared modulo a day; a weekly one (`sun:05:00-sun:05:30`) modulo a week.
fn window_minutes(value: &str, weekly: bool) -> Result<(u32, u32), String> {
    let shape = if weekly {
        "must look like `sun:05:00-sun:05:30` (ddd:hh24:mi-ddd:hh24:mi, UTC, days mon…sun)"
    } else {
        "must look like `03:00-03:30` (hh24:mi-hh24:mi, UTC)"
    };
    let parse = |s: &str| -> Option<u32> {
        let (day, time) = if weekly {
            let (day, time) = s.split_once(':')?;
            (DAYS.iter().position(|d| d.eq_ignore_ascii_case(day))? as u32, time)
        } else {
            (0, s)
        };
        let (h, m) = time.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(day * 24 * 60 + h * 60 + m)
    };
    let Some((start, end)) = value.split_once('-') else { return Err(shape.into()) };
    let (Some(start), Some(end)) = (parse(start), parse(end)) else { return Err(shape.into()) };
    let period = if weekly { WEEK } else { 24 * 60 };
    let minutes = (end + period - start) % period;
    if minutes < 30 {
        return Err(format!("lasts {minutes} minutes; RDS needs at least 30"));
    }
    Ok((start, start + minutes))
}

/// Whether a daily backup window and a weekly maintenance window overlap (RDS refuses that).
/// Both must already be valid; an invalid one overlaps nothing.
pub fn windows_overlap(backup: &str, maintenance: &str) -> bool {
    let (Ok((b_start, b_end)), Ok((m_start, m_end))) =
        (window_minutes(backup, false), window_minutes(maintenance, true))
    else {
        return false;
    };
    // On a circle of one week: the backup window once a day against the maintenance window,
    // each shifted by a week either way so that windows across Sunday midnight meet.
    (0..7).any(|day| {
        let (start, end) = (b_start + day * 24 * 60 + WEEK, b_end + day * 24 * 60 + WEEK);
        [0, WEEK, 2 * WEEK].iter().any(|shift| start < m_end + shift && m_start + shift < end)
    })
}

/// The AWS partition of a region, the second part of every ARN there: `aws-cn` in China,
/// `aws-us-gov` in GovCloud, `aws-eusc` in the European Sovereign Cloud, `aws` elsewhere.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// Resource ids such as `vpc-0abc`, `subnet-…`, `sg-…`, `ami-…`.
pub fn resource_id(value: &str, prefix: &str) -> Result<(), String> {
    let Some(rest) = value.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return Err(format!("must start with `{prefix}-`"));
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("must be `{prefix}-` followed by hexadecimal digits"));
    }
    Ok(())
}

pub fn email(value: &str) -> Result<(), String> {
    // email_address parses the full RFC 5322 grammar; an ops address also needs a dotted domain.
    let address: email_address::EmailAddress = value.parse().map_err(|e| format!("is not an e-mail address ({e})"))?;
    if !address.domain().contains('.') {
        return Err("has no dotted domain (`name@example.com`)".into());
    }
    Ok(())
}

/// An ALB health-check matcher: `200`, `200,202` or `200-299`, codes in 200–499.
pub fn http_matcher(value: &str) -> Result<(), String> {
    let code = |s: &str| -> Result<u16, String> {
        let n: u16 = s.trim().parse().map_err(|_| format!("has `{s}`, which is not an HTTP status code"))?;
        if (200..=499).contains(&n) {
            Ok(n)
        } else {
            Err(format!("has {n}, outside 200–499 (the codes an ALB health check accepts)"))
        }
    };
    for part in value.split(',') {
        match part.split_once('-') {
            Some((low, high)) => {
                if code(low)? > code(high)? {
                    return Err(format!("has the range `{part}`, which runs backwards"));
                }
            }
            None => {
                code(part)?;
            }
        }
    }
    Ok(())
}

/// A Linux user name for `runas`, `owner` and `group`.
pub fn unix_user(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err("is not a Linux user or group name".into())
    }
}

/// Build environment variable names: shell identifiers, and CodeBuild reserves `CODEBUILD_`.
pub fn env_var_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if !ok {
        return Err("is not a shell variable name (letters, digits, `_`, not starting with a digit)".into());
    }
    if value.starts_with("CODEBUILD_") {
        return Err("starts with `CODEBUILD_`, which CodeBuild reserves".into());
    }
    Ok(())
}

/// AWS region names such as `eu-west-1`.
pub fn region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err("is not an AWS region name such as \"eu-west-1\"".into())
    }
}

/// EC2 instance types such as `t3.small` (family, a dot, size).
pub fn instance_type(value: &str) -> Result<(), String> {
    let ok = value.split_once('.').is_some_and(|(family, size)| {
        !family.is_empty()
            && family.as_bytes()[0].is_ascii_lowercase()
            && family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err("is not an EC2 instance type such as \"t3.small\"".into())
    }
}

/// The `ManagedBy` tag's value on everything the tool creates.
pub const MANAGED_BY: &str = "vending";

/// Tags the tool sets on every resource; a user's tags may not set them.
pub const RESERVED_TAGS: &[&str] = &["Customer", "Environment", "ManagedBy"];

/// AWS tag keys: 1–128 characters, not starting with `aws:`; values up to 256.
pub fn tag(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(format!("tag key `{key}` must be 1 to 128 characters"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!("tag key `{key}` starts with `aws:`, which AWS reserves"));
    }
    if value.chars().count() > 256 {
        return Err(format!("tag `{key}` has a value longer than 256 characters"));
    }
    Ok(())
}

/// Whether a certificate for `domain` (possibly `*.example.com`) covers `host`.
pub fn certificate_covers(domain: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    match domain.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| rest == parent && !label.is_empty() && !label.contains(['*', '?'])),
        None => host == domain,
    }
}

/// Whether some host name matches both ALB host patterns (case-insensitive; `*` any run of
/// characters, `?` exactly one). A dynamic program over both patterns at once.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<u8>, Vec<u8>) = (a.to_ascii_lowercase().into_bytes(), b.to_ascii_lowercase().into_bytes());
    let literal_tail = |p: &[u8]| p.iter().rposition(|c| matches!(c, b'*' | b'?')).map_or(0, |i| i + 1);
    // A cheap refusal first: the literal tails after each last wildcard must agree.
    let (ta, tb) = (&a[literal_tail(&a)..], &b[literal_tail(&b)..]);
    let n = ta.len().min(tb.len());
    if ta[ta.len() - n..] != tb[tb.len() - n..] {
        return false;
    }
    // can[i][j]: the rests a[i..] and b[j..] can match one common string.
    let mut can = vec![vec![false; b.len() + 1]; a.len() + 1];
    for i in (0..=a.len()).rev() {
        for j in (0..=b.len()).rev() {
            can[i][j] = match (a.get(i), b.get(j)) {
                (None, None) => true,
                (Some(b'*'), _) => can[i + 1][j] || (j < b.len() && can[i][j + 1]),
                (_, Some(b'*')) => can[i][j + 1] || (i < a.len() && can[i + 1][j]),
                (Some(x), Some(y)) => (x == y || *x == b'?' || *y == b'?') && can[i + 1][j + 1],
                _ => false,
            };
        }
    }
    can[0][0]
}
