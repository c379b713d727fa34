//! TEST-ONLY sabotage, compiled only with the `sabotage-ack` feature (which only the tests crate
//! enables): with `RINGKV_SABOTAGE=ack-before-store` in its environment, a node acknowledges a
//! client's put at once and hands it to the core a second later, so a node killed meanwhile
//! loses writes it acknowledged. The chaos checker must report them.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{respond, ClientTo, Internal, Shell};
use crate::core::Input;
use crate::net::Responder;
use crate::proto::{ClientRequest, ClientResponse, Response, WriteResult};

/// How long an acknowledged put waits before the core sees it.
const DEFER: Duration = Duration::from_secs(1);

/// Whether this process was asked to sabotage itself.
fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var("RINGKV_SABOTAGE").is_ok_and(|v| v == "ack-before-store");
        if on {
            tracing::error!("SABOTAGE: acknowledging puts before storing them (test only)");
        }
        on
    })
}

impl Shell {
    /// Takes a put (acknowledging it now, storing it later) and gives anything else back.
    pub(super) fn ack_before_store(
        &mut self,
        req: ClientRequest,
        responder: Responder,
    ) -> Option<(ClientRequest, Responder)> {
        if !on() || !matches!(req, ClientRequest::Put { .. }) {
            return Some((req, responder));
        }
        let written = WriteResult {
            acked: 1,
            ..WriteResult::default()
        };
        respond(
            responder,
            &Response::Client(Ok(ClientResponse::Written(written))),
        );
        let internal = self.internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DEFER).await;
            let _ = internal.send(Internal::Deferred(req));
        });
        None
    }

    /// Stores a put acknowledged earlier; its answer goes nowhere.
    pub(super) fn deferred(&mut self, req: ClientRequest) {
        let (tx, _) = oneshot::channel();
        let id = self.client_id(ClientTo::Local(tx));
        self.input(Input::Client { id, req });
    }
}
