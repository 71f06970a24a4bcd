//! Who runs the command: STS `GetCallerIdentity`, for approval requests and decisions (and the
//! account that ARNs are built in). Locally, the emulator answers with the IAM user whose access
//! key signed the request.

use anyhow::Context;

use crate::infra::failed;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub arn: String,
    pub account: String,
}

pub async fn caller(sts: &aws_sdk_sts::Client) -> anyhow::Result<Caller> {
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| failed("cannot tell who these credentials belong to (STS GetCallerIdentity)", e))?;
    Ok(Caller {
        arn: me.arn().context("STS returned no ARN")?.to_string(),
        account: me.account().context("STS returned no account")?.to_string(),
    })
}
