//! PostgreSQL on the shared listener: each accepted connection becomes a
//! `PgSession`.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::TcpStream;

use super::session::PgSession;
use crate::gateway::Gateway;
use crate::listener::{Admission, Listener, Protocol};

/// The PostgreSQL protocol, for [`Listener`].
pub struct Postgres;

impl Protocol for Postgres {
    const NAME: &'static str = "postgres";

    fn start(gw: Arc<Gateway>, socket: TcpStream, peer: SocketAddr, admission: Admission) {
        PgSession::new(gw, socket, peer, admission).start();
    }
}

/// The PostgreSQL listener: accepts until shutdown, within the gateway's
/// session limit.
pub type PgListener = Listener<Postgres>;
