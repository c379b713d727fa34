//! A client of any node, over the same QUIC protocol the nodes speak.

use std::net::SocketAddr;

use crate::api::Api;
use crate::faults::{FaultPlan, FaultRequest};
use crate::net::{TlsMaterial, Transport, TransportConfig};
use crate::proto::{self, ClientRequest, ClientResponse, Request, Response};
use crate::Error;

/// Talks to one node of a cluster; that node coordinates every request.
///
/// ```no_run
/// use ringkv::{Api, Client, ReadOptions, WriteOptions};
/// use ringkv::net::TlsMaterial;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsMaterial::load_client("certs".as_ref())?;
/// let client = Client::connect("127.0.0.1:7000".parse()?, &tls)?;
/// client.put(b"user:1".to_vec(), b"ada".to_vec(), WriteOptions::default()).await?;
/// let opts = ReadOptions { r: Some(2), ..Default::default() };
/// let read = client.get(b"user:1".to_vec(), opts).await?;
/// println!("{:?}", read.values);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    node: SocketAddr,
}

impl Client {
    /// A client of the node at `node`, presenting the certificate in `tls`.
    pub fn connect(node: SocketAddr, tls: &TlsMaterial) -> Result<Self, Error> {
        Self::with_config(node, tls, TransportConfig::default())
    }

    /// Like [`Client::connect`], with network settings.
    pub fn with_config(
        node: SocketAddr,
        tls: &TlsMaterial,
        config: TransportConfig,
    ) -> Result<Self, Error> {
        let transport = Transport::client(tls, config)?;
        Ok(Self { transport, node })
    }

    /// The node this client talks to.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// Sets or reads the faults of a node started with fault injection (test clusters only).
    pub async fn faults(&self, req: FaultRequest) -> Result<FaultPlan, Error> {
        let frame = proto::encode(&Request::Fault(req))?;
        let bytes = self.transport.call(self.node, &frame).await?;
        match proto::decode::<Response>(&bytes)? {
            Response::Fault(result) => Ok(result?),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}

impl Api for Client {
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        let frame = proto::encode(&Request::Client(req))?;
        let bytes = self.transport.call(self.node, &frame).await?;
        match proto::decode::<Response>(&bytes)? {
            Response::Client(result) => Ok(result?),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}
