//! One module per page.

pub mod chat;
pub mod cursors;
pub mod home;
