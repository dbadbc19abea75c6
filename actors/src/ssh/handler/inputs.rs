//! A channel's inputs from the agent, queued to its relay in arrival
//! order; a request is answered only once the relay decided, so replies
//! reach the agent in the order it asked.

use std::time::Duration;

use russh::ChannelId;
use russh::server::Session;
use tokio::sync::oneshot;

use super::ServerHandler;
use crate::ssh::channel::{self, ChannelInput, Request};

impl ServerHandler {
    /// Queue an input for a channel's relay; `false` if the relay is gone.
    pub(super) async fn hand_to_relay(&mut self, channel: ChannelId, input: ChannelInput) -> bool {
        let Some(tx) = self.channels.get(&channel) else {
            return false;
        };
        if tx.send(input).await.is_err() {
            self.channels.remove(&channel);
            return false;
        }
        true
    }

    /// Ask the relay and answer the agent, in order.
    pub(super) async fn request(
        &mut self,
        channel: ChannelId,
        request: Request,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (tx, rx) = oneshot::channel();
        let answer = if self
            .hand_to_relay(channel, ChannelInput::Request(request, tx))
            .await
        {
            // The relay answers within its own request timeout; the
            // margin covers recording.
            matches!(
                tokio::time::timeout(channel::REQUEST_TIMEOUT + Duration::from_secs(5), rx).await,
                Ok(Ok(true))
            )
        } else {
            false
        };
        if answer {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}
