//! The internal functions of topics: `shoal.topic.history` (a peer asks
//! for the messages this node keeps) and `shoal.topic.publish` (what
//! `shoal.publish` in JavaScript calls); and the names under which scripts'
//! `shoal.subscribe` handlers are registered.

use super::hub::{PublishOptions, TopicHub};
use crate::calls::registry::Function;
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) const TOPIC_HISTORY: &str = "shoal.topic.history";
pub(crate) const TOPIC_PUBLISH: &str = "shoal.topic.publish";
/// Scripts register `shoal.subscribe(topic, fn)` handlers as
/// `shoal.subscriber:<topic>:<n>` (see shoal-js).
const SUBSCRIBER_PREFIX: &str = "shoal.subscriber:";

/// The topic a script's subscriber function handles, if it is one.
pub fn subscriber_topic(function: &str) -> Option<&str> {
    let rest = function.strip_prefix(SUBSCRIBER_PREFIX)?;
    let (topic, index) = rest.rsplit_once(':')?;
    index.parse::<u32>().ok().map(|_| topic)
}

fn topic_of(args: &Value) -> Result<&str, String> {
    args.get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("expected {{\"topic\": name, ...}}, got {args}"))
}

/// `retain` as a count: scripts' numbers arrive as floats (`50.0`).
fn retain_of(retain: &Value) -> Result<Option<u32>, String> {
    if retain.is_null() {
        return Ok(None);
    }
    match retain.as_f64() {
        Some(k) if k >= 0.0 && k.fract() == 0.0 && k <= f64::from(u32::MAX) => Ok(Some(k as u32)),
        _ => Err(format!(
            "retain must be a whole number of messages, not {retain}"
        )),
    }
}

/// The topics' internal functions, for the registry.
pub fn functions(hub: &Arc<TopicHub>) -> Vec<Function> {
    let internal = |mut f: Function| {
        f.internal = true;
        f
    };
    let history = Arc::clone(hub);
    let publish = Arc::clone(hub);
    vec![
        internal(Function::new_async(TOPIC_HISTORY, move |_, args| {
            let hub = Arc::clone(&history);
            async move {
                let kept = hub.kept(topic_of(&args)?);
                Ok(serde_json::to_value(&kept)?)
            }
        })),
        internal(Function::new_async(TOPIC_PUBLISH, move |_, args| {
            let hub = Arc::clone(&publish);
            async move {
                let topic = topic_of(&args)?;
                let options = PublishOptions {
                    name: args["name"].as_str().map(str::to_string),
                    retain: retain_of(&args["retain"])?,
                };
                let published = hub.publish(topic, args["value"].clone(), options).await?;
                Ok(json!(published))
            }
        })),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_takes_whole_numbers_of_any_json_kind() {
        assert_eq!(retain_of(&json!(null)), Ok(None));
        assert_eq!(retain_of(&json!(50)), Ok(Some(50)));
        assert_eq!(retain_of(&json!(50.0)), Ok(Some(50)));
        assert!(retain_of(&json!(5.5)).unwrap_err().contains("whole number"));
        assert!(retain_of(&json!(-1)).is_err());
    }

    #[test]
    fn subscriber_names_give_their_topic() {
        assert_eq!(subscriber_topic("shoal.subscriber:lobby:0"), Some("lobby"));
        assert_eq!(subscriber_topic("shoal.subscriber:a:b:12"), Some("a:b"));
        assert_eq!(subscriber_topic("shoal.subscriber:lobby"), None);
        assert_eq!(subscriber_topic("pi"), None);
    }
}
