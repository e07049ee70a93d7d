//! One module per `sm` subcommand.

pub mod attach;
pub mod hook;
pub mod locks;
pub mod send;
pub mod sessions;
pub mod setup;
pub mod spawn;
