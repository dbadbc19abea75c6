//! The PostgreSQL gateway: codec, startup, upstream, relay and the session
//! actor that ties them together.

pub mod cancel;
pub mod catalog;
pub mod client_mask;
pub mod codec;
pub mod copy_record;
pub mod encoding;
pub mod filter;
pub mod gate;
pub mod listener;
pub mod messages;
pub mod options;
pub mod relay;
pub mod session;
pub mod startup;
pub mod stream;
pub mod tap;
pub mod upstream;

pub use listener::PgListener;
pub use session::PgSession;
