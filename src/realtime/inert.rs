//! The channel client during server rendering: no socket, nothing sent. The page renders in its
//! "connecting" state and the browser takes over after hydration.

use serde_json::Value;
use std::rc::Rc;
use switchboard_protocol::Frame;

use super::{ChannelOptions, OnHistory, OnOutcome, Signals, Unsent};

/// Server-side stand-in for the browser connection.
pub struct Sender;

impl Sender {
    pub(crate) fn open(
        _channel: &str,
        _options: ChannelOptions,
        _signals: Signals,
        _listener: Rc<dyn Fn(&Frame)>,
    ) -> Rc<Self> {
        Rc::new(Sender)
    }

    pub(crate) fn send_stored(&self, _unsent: Unsent) {}

    pub(crate) fn retry(&self, _id: &str) {}

    pub(crate) fn forget(&self, _id: &str) {}

    pub(crate) fn history(&self, _before: Option<u64>, _limit: usize, _on_answer: OnHistory) {}

    pub(crate) fn send_to(&self, _channel: &str, _payload: Value, _on_outcome: OnOutcome) {}

    pub(crate) fn send_volatile(&self, _payload: Value) {}
}
