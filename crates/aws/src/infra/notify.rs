//! SNS: the approval topic of a customer (or of the platform) and its e-mail subscriptions, and
//! publishing a request to it.
//!
//! On AWS an e-mail subscription is `PendingConfirmation` until its recipient clicks the link SNS
//! sends, and a pending subscription cannot be removed through the API (it lapses unconfirmed);
//! the emulator confirms at once. The live state therefore lists pending addresses apart, the plan
//! does not count an unwanted pending one as a difference, and applying says what it could not
//! remove yet.

use aws_sdk_sns::types::Tag;
use vending::plan::{Resource, Tags, Topic};

use super::{code, failed, live_tags, Clients, Current, Found};

/// What SNS reports as the ARN of a subscription that waits for its recipient's confirmation.
const PENDING: &str = "PendingConfirmation";

/// The topic's ARN, from its name and the caller's account.
pub(crate) async fn topic_arn(clients: &Clients, region: &str, name: &str) -> anyhow::Result<String> {
    let caller = crate::identity::caller(&clients.sts).await?;
    Ok(format!("arn:{}:sns:{region}:{}:{name}", vending::names::partition(region), caller.account))
}

pub async fn read_topic(clients: &Clients, region: &str, name: &str) -> anyhow::Result<Option<Found>> {
    let arn = topic_arn(clients, region, name).await?;
    match clients.sns.get_topic_attributes().topic_arn(&arn).send().await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("NotFound") => return Ok(None),
        Err(e) => return Err(failed("get the attributes of", e)),
    }
    let mut subscribers = Vec::new();
    let mut pending = Vec::new();
    let mut pages = clients.sns.list_subscriptions_by_topic().topic_arn(&arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("list the subscriptions of", e))?;
        for subscription in page.subscriptions() {
            if subscription.protocol() != Some("email") {
                continue;
            }
            let Some(endpoint) = subscription.endpoint() else { continue };
            subscribers.push(endpoint.to_string());
            if subscription.subscription_arn() == Some(PENDING) {
                pending.push(endpoint.to_string());
            }
        }
    }
    subscribers.sort();
    pending.sort();
    let tags = clients
        .sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| failed("list the tags of", e))?
        .tags
        .unwrap_or_default();
    let tags = live_tags(tags.into_iter().map(|t| (t.key, t.value)));
    Ok(Some(Found::new(Resource::Topic(Topic { subscribers, pending, tags }), arn)))
}

fn to_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect()
}

/// Creates the topic (CreateTopic is idempotent for the same name and tags), subscribes the
/// addresses it lacks and unsubscribes confirmed ones no longer wanted. Returns what could not be
/// done yet: pending addresses that AWS does not let anyone remove.
pub(crate) async fn apply_topic(
    clients: &Clients,
    region: &str,
    name: &str,
    d: &Topic,
    current: Option<Current<'_, Topic>>,
) -> anyhow::Result<Vec<String>> {
    let sns = &clients.sns;
    let arn = match &current {
        Some(current) => current.id.to_string(),
        None => sns
            .create_topic()
            .name(name)
            .set_tags(Some(to_tags(&d.tags)))
            .send()
            .await
            .map_err(|e| failed("create", e))?
            .topic_arn
            .unwrap_or(topic_arn(clients, region, name).await?),
    };
    let empty = Topic::default();
    let live = current.as_ref().map_or(&empty, |c| c.live);
    let (add, remove) = d.removable_difference(live);
    for address in &add {
        sns.subscribe()
            .topic_arn(&arn)
            .protocol("email")
            .endpoint(address)
            .send()
            .await
            .map_err(|e| failed(&format!("subscribe {address} to"), e))?;
    }
    if !remove.is_empty() {
        let mut pages = sns.list_subscriptions_by_topic().topic_arn(&arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("list the subscriptions of", e))?;
            for subscription in page.subscriptions() {
                let (Some(endpoint), Some(subscription_arn)) =
                    (subscription.endpoint(), subscription.subscription_arn())
                else {
                    continue;
                };
                if remove.iter().any(|r| r == endpoint) && subscription_arn != PENDING {
                    sns.unsubscribe()
                        .subscription_arn(subscription_arn)
                        .send()
                        .await
                        .map_err(|e| failed(&format!("unsubscribe {endpoint} from"), e))?;
                }
            }
        }
    }
    if current.is_some() && d.tags != live.tags {
        let put = sns.tag_resource().resource_arn(&arn).set_tags(Some(to_tags(&d.tags))).send();
        super::retag(
            &d.tags,
            &live.tags,
            async { put.await.map(|_| ()).map_err(|e| failed("tag", e)) },
            |stale| async {
                let remove = sns.untag_resource().resource_arn(&arn).set_tag_keys(Some(stale.into_keys().collect()));
                remove.send().await.map(|_| ()).map_err(|e| failed("untag", e))
            },
        )
        .await?;
    }
    let stuck: Vec<String> =
        live.pending.iter().filter(|p| !d.subscribers.contains(p)).map(|p| format!("{name}: {p} is no longer an approver but has not confirmed its subscription, which AWS does not let anyone remove; it lapses unconfirmed")).collect();
    Ok(stuck)
}

/// Publishes one message; returns its id.
pub async fn publish(clients: &Clients, topic_arn: &str, subject: &str, body: &str) -> anyhow::Result<String> {
    let out = clients
        .sns
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(body)
        .send()
        .await
        .map_err(|e| failed(&format!("cannot publish to {topic_arn}"), e))?;
    Ok(out.message_id.unwrap_or_default())
}
