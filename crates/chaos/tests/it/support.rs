//! Test peers for the proxy: an echo "broker" that answers every request frame, and a raw
//! frame client. Both speak only the frame structure, which is all the proxy looks at.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{Plan, Proxy, ProxyConfig, ProxyHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const LOCALHOST: &str = "127.0.0.1:0";

/// How long a client waits before concluding that no more frames are coming.
pub const SILENCE_MS: u64 = 300;

/// A whole request frame: length, api_key, api_version 0, correlation id, payload.
pub fn request(api_key: i16, correlation_id: i32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + payload.len());
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(payload);
    with_length(body)
}

fn with_length(body: Vec<u8>) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The echo broker's answer to a request frame: the correlation id, then the whole request body.
pub fn echo_response(request_frame: &[u8]) -> Vec<u8> {
    let body = &request_frame[4..];
    let mut response = body[4..8].to_vec();
    response.extend_from_slice(body);
    with_length(response)
}

/// A request frame's (api_key, correlation_id).
pub fn request_ids(frame: &[u8]) -> (i16, i32) {
    let api_key = i16::from_be_bytes([frame[4], frame[5]]);
    let correlation_id = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
    (api_key, correlation_id)
}

/// A response frame's correlation id.
pub fn response_correlation_id(frame: &[u8]) -> i32 {
    i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let body_bytes = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    let mut frame = prefix.to_vec();
    frame.resize(4 + body_bytes, 0);
    stream.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

/// A broker that answers each request with [`echo_response`] and remembers what it saw.
pub struct EchoBroker {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoBroker {
    pub async fn start() -> EchoBroker {
        let listener = TcpListener::bind(LOCALHOST).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let (seen, gone) = (Arc::clone(&requests), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, gone) = (Arc::clone(&seen), Arc::clone(&gone));
                tokio::spawn(async move {
                    while let Some(frame) = read_frame(&mut stream).await {
                        let response = echo_response(&frame);
                        seen.lock().unwrap().push(frame);
                        if stream.write_all(&response).await.is_err() {
                            break;
                        }
                    }
                    gone.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        EchoBroker {
            addr,
            requests,
            closed,
            task,
        }
    }

    /// Every request frame received so far, in arrival order.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    /// How many connections the broker has seen end.
    pub fn connections_closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits up to two seconds for `n` connections to have ended.
    pub async fn wait_closed(&self, n: usize) -> bool {
        for _ in 0..200 {
            if self.connections_closed() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl Drop for EchoBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a client observed when it stopped waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frame(Vec<u8>),
    Closed,
    Silent,
}

pub struct Client {
    stream: TcpStream,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Writes a frame. A write into a connection the proxy has cut may fail; that is ignored
    /// here because the next read reports the close, which is what tests check.
    pub async fn send(&mut self, frame: &[u8]) {
        let _ = self.stream.write_all(frame).await;
    }

    pub async fn next_within(&mut self, wait_ms: u64) -> Next {
        let read =
            tokio::time::timeout(Duration::from_millis(wait_ms), read_frame(&mut self.stream));
        match read.await {
            Ok(Some(frame)) => Next::Frame(frame),
            Ok(None) => Next::Closed,
            Err(_) => Next::Silent,
        }
    }

    /// The next frame, which must come within two seconds.
    pub async fn next_frame(&mut self) -> Vec<u8> {
        match self.next_within(2_000).await {
            Next::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads frames until the proxy falls silent or closes; returns them and how it ended.
    pub async fn drain(&mut self) -> (Vec<Vec<u8>>, Next) {
        let mut frames = Vec::new();
        loop {
            match self.next_within(SILENCE_MS).await {
                Next::Frame(frame) => frames.push(frame),
                end => return (frames, end),
            }
        }
    }
}

/// An echo broker with a proxy in front of it.
pub struct Setup {
    pub broker: EchoBroker,
    pub proxy: ProxyHandle,
}

impl Setup {
    pub async fn start(plan: Plan) -> Setup {
        Setup::start_with(plan, |_| {}).await
    }

    pub async fn start_with(plan: Plan, configure: impl FnOnce(&mut ProxyConfig)) -> Setup {
        let broker = EchoBroker::start().await;
        let mut config = ProxyConfig::new(LOCALHOST.parse().unwrap(), broker.addr, plan);
        configure(&mut config);
        let proxy = Proxy::start_with(config).await.unwrap();
        Setup { broker, proxy }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.proxy.local_addr()).await
    }
}
