//! One module per page.

pub mod chat;
pub mod home;
