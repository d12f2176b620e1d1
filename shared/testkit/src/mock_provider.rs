//! The mock provider handle: starts the server, queues behaviours and exposes
//! what the server received.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::serve::ListenerExt as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::behavior::Behavior;
use crate::routes;

/// A mock OpenAI-compatible provider on `127.0.0.1`, serving in a background
/// task until dropped.
#[derive(Debug)]
pub struct MockProvider {
    server: Server,
}

/// One chat completion request as the mock provider received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// The parsed JSON body; a body that is not JSON is kept as a string.
    pub body: Value,
    pub authorization: Option<String>,
    /// Every header with a UTF-8 value, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    pub(crate) fn new(body: Value, headers: &HeaderMap) -> Self {
        let text = |v: &axum::http::HeaderValue| v.to_str().ok().map(str::to_owned);
        Self {
            body,
            authorization: headers.get(AUTHORIZATION).and_then(text),
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), text(value)?)))
                .collect(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl MockProvider {
    /// Binds 127.0.0.1:0 and serves in a background tokio task until dropped.
    pub async fn start() -> anyhow::Result<MockProvider> {
        Ok(MockProvider {
            server: Server::start(routes::router).await?,
        })
    }

    /// The base URL an OpenAI client uses, e.g. `http://127.0.0.1:41234/v1`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Queues a behaviour: each chat request pops the next one; when the queue
    /// is empty the default (initially [`Behavior::Ok`]) is used.
    pub fn push(&self, b: Behavior) {
        self.server.push(b);
    }

    /// Replaces the behaviour used when the queue is empty.
    pub fn set_default(&self, b: Behavior) {
        self.server.set_default(b);
    }

    /// Every chat request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.server.requests()
    }

    /// Number of chat requests received so far.
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    /// Requests other than data planes' health probes (whose one message is
    /// "ping"), which reach an idle target whenever the fleet asks for them.
    pub fn client_request_count(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.body["messages"][0]["content"] != "ping")
            .count()
    }

    /// Number of streaming responses whose client went away before the
    /// stream finished.
    pub fn cancelled_streams(&self) -> usize {
        self.server.cancelled_streams()
    }
}

/// The server behind every mock: a listener on `127.0.0.1`, the state its
/// handlers share with the test, and the shutdown signal sent on drop.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Server {
    /// Binds 127.0.0.1:0 and serves the routes `router` builds in a
    /// background tokio task until dropped.
    pub(crate) async fn start(router: fn(Arc<Shared>) -> Router) -> anyhow::Result<Server> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the mock provider")?;
        let addr = listener
            .local_addr()
            .context("reading the mock provider address")?;
        let shared = Arc::new(Shared::new());
        let app = router(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            // Like a real provider: small stream writes go out at once.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                // A dropped sender means the handle is gone: stop either way.
                let _ = stopped.await;
            });
            // Nobody is left to report a server error to; tests see it as
            // failed requests instead.
            let _ = serve.await;
        });
        Ok(Server {
            addr,
            shared,
            shutdown: Some(shutdown),
        })
    }

    /// `http://{addr}/v1`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub(crate) fn push(&self, b: Behavior) {
        self.shared.state.send_modify(|s| s.queue.push_back(b));
    }

    pub(crate) fn set_default(&self, b: Behavior) {
        self.shared.state.send_modify(|s| s.default = b);
    }

    pub(crate) fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.state.borrow().requests.clone()
    }

    pub(crate) fn request_count(&self) -> usize {
        self.shared.state.borrow().requests.len()
    }

    pub(crate) fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server task may already be gone; nothing to do then.
            let _ = shutdown.send(());
        }
    }
}

/// State shared between the handle and the server's handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    // A watch sender is a cell that both sync test code and async handlers
    // can update briefly without holding a lock across an await.
    state: watch::Sender<State>,
    pub(crate) cancelled: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Behavior>,
    default: Behavior,
    requests: Vec<ReceivedRequest>,
}

impl Shared {
    fn new() -> Self {
        Self {
            state: watch::Sender::new(State {
                queue: VecDeque::new(),
                default: Behavior::Ok,
                requests: Vec::new(),
            }),
            cancelled: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Records `request` and picks its behaviour in one step, so the recorded
    /// order matches the order behaviours are consumed. Returns the request's
    /// sequence number (from 1) and its behaviour.
    pub(crate) fn accept(&self, request: ReceivedRequest) -> (usize, Behavior) {
        let mut picked = (0, Behavior::Ok);
        self.state.send_modify(|s| {
            s.requests.push(request);
            let behavior = s.queue.pop_front().unwrap_or_else(|| s.default.clone());
            picked = (s.requests.len(), behavior);
        });
        picked
    }

    /// Records a request that gets no behaviour (it was rejected as invalid).
    pub(crate) fn record(&self, request: ReceivedRequest) {
        self.state.send_modify(|s| s.requests.push(request));
    }
}
