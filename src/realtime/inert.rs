//! The channel client during server rendering: no socket, nothing sent. The page renders in its
//! "connecting" state and the browser takes over after hydration.

use serde_json::Value;
use std::rc::Rc;
use switchboard_protocol::Frame;

use super::{ChannelOptions, OnOutcome, Signals};

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

    pub(crate) fn send(&self, _channel: Option<String>, _payload: Value, _on_outcome: OnOutcome) {}

    pub(crate) fn send_volatile(&self, _payload: Value) {}
}
