//! Classic pub/sub: `PUBLISH`, `SUBSCRIBE`/`PSUBSCRIBE` and `PUBSUB NUMSUB`, the wire of Node's
//! `createAdapter`.

use std::time::Duration;

use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, PubsubInterface};
use fred::prelude::Builder;
use fred::types::{CustomCommand, Value as RedisValue};

use crate::error::AdapterError;

#[derive(Debug)]
pub(super) struct ClassicPubSub {
    pub(super) sub: SubscriberClient,
    pub(super) publisher: Client,
}

impl ClassicPubSub {
    pub(super) async fn connect(builder: &Builder) -> Result<Self, AdapterError> {
        let sub = builder.build_subscriber_client()?;
        let publisher = builder.build()?;
        sub.init().await?;
        publisher.init().await?;
        Ok(Self { sub, publisher })
    }

    pub(super) async fn publish(
        &self,
        channel: String,
        payload: Bytes,
    ) -> Result<(), AdapterError> {
        self.publisher
            .publish::<RedisValue, _, _>(channel, RedisValue::Bytes(payload))
            .await?;
        Ok(())
    }

    /// One `SUBSCRIBE` naming every channel; fred answers as soon as it is written.
    pub(super) async fn subscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        Ok(self.sub.subscribe(channels).await?)
    }

    pub(super) async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), AdapterError> {
        Ok(self.sub.unsubscribe(channels).await?)
    }

    pub(super) async fn psubscribe(&self, patterns: Vec<String>) -> Result<(), AdapterError> {
        Ok(self.sub.psubscribe(patterns).await?)
    }

    pub(super) async fn punsubscribe(&self, patterns: Vec<String>) -> Result<(), AdapterError> {
        Ok(self.sub.punsubscribe(patterns).await?)
    }

    /// fred answers SUBSCRIBE as soon as it is written (Redis's confirmation arrives out of
    /// band and is dropped), so a PING on the same connection, answered in order after them,
    /// stands in for it. In a cluster it goes to the node fred sends this client's
    /// subscriptions to.
    pub(super) async fn confirm_subscriptions(&self, timeout: Duration) -> bool {
        let slot = fred::util::redis_keyslot(self.sub.id().as_bytes());
        let ping = CustomCommand::new_static("PING", slot, false);
        let answered = tokio::time::timeout(
            timeout,
            self.sub.custom::<RedisValue, RedisValue>(ping, Vec::new()),
        )
        .await;
        matches!(answered, Ok(Ok(_)))
    }

    /// `PUBSUB NUMSUB <channel>`: connections subscribed to it.
    pub(super) async fn subscriber_count(&self, channel: &str) -> Result<u64, AdapterError> {
        let value: RedisValue = self.publisher.pubsub_numsub(channel.to_owned()).await?;
        Ok(super::numsub_count(&value))
    }
}
