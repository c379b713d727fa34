//! The shell's answer to fault-injection requests ([`crate::faults`]): the core never sees
//! them; the shell checks them against the members the core knows and sets the shared state.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::{ClientTo, Shell};
use crate::core::Input;
use crate::faults::{FaultError, FaultPlan, FaultRequest};
use crate::proto::{ClientRequest, ClientResponse};

impl Shell {
    /// Sets or reports this node's faults.
    pub(super) fn fault(&mut self, req: FaultRequest) -> Result<FaultPlan, FaultError> {
        match req {
            FaultRequest::Get => self.faults.plan(&self.name),
            FaultRequest::Set(plan) => {
                if !self.faults.enabled() {
                    return Err(FaultError::Disabled(self.name.clone()));
                }
                let peers = self.peers();
                let active = plan.resolve(&self.name, self.me, &peers)?;
                tracing::warn!(plan = ?plan, "fault injection: faults set");
                self.faults.set(&self.name, active)
            }
        }
    }

    /// The other members the core knows, with their addresses (its answer to `Members`,
    /// which it gives at once).
    fn peers(&mut self) -> Vec<(String, SocketAddr)> {
        let (tx, mut rx) = oneshot::channel();
        let id = self.client_id(ClientTo::Local(tx));
        self.input(Input::Client {
            id,
            req: ClientRequest::Members,
        });
        let Ok(Ok(ClientResponse::Members(rows))) = rx.try_recv() else {
            self.clients.remove(&id);
            return Vec::new();
        };
        rows.into_iter()
            .filter(|m| m.name != self.name)
            .filter_map(|m| Some((m.name, m.addr.parse().ok()?)))
            .collect()
    }
}
