//! One WebSocket connection after its upgrade: the raw TCP stream framed by tungstenite with
//! small buffers, and [`Socket`], the sending half shared by the connection's tasks.
//!
//! The connection leaves actix-http's HTTP/1 dispatcher at the upgrade (see `upgrade.rs`): kept
//! there, every socket held the dispatcher's two 8 KiB buffers and its streaming body for as long
//! as it lived, 40 % of a subscriber's memory.

use std::sync::Arc;

use futures::SinkExt;
use futures::stream::{SplitSink, SplitStream, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::{MAX_MESSAGE_BYTES, SEND_TIMEOUT};

/// Bytes read from the socket at a time. Client messages are small (`subscribe`, `ping`); a
/// longer one gets room for its whole length once its header is read.
const READ_CHUNK: usize = 512;
/// Bytes of outgoing frames that wait for one write.
const WRITE_CHUNK: usize = 512;

pub type Incoming = SplitStream<WebSocketStream<TcpStream>>;

/// The connection is closed (or failing): nothing more can be sent on it.
#[derive(Debug)]
pub struct Closed;

/// The sending half of a connection. Clones share it; a send waits for the one before it.
#[derive(Clone)]
pub struct Socket {
    sink: Arc<tokio::sync::Mutex<SplitSink<WebSocketStream<TcpStream>, Message>>>,
}

/// Frames `io` as the server side of a WebSocket. `read` is what the HTTP parser had already
/// read past the upgrade request (a client may send its first frame without waiting).
pub async fn accept(io: TcpStream, read: Vec<u8>) -> (Socket, Incoming) {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        // Messages are written when a batch ends (`texts`), or once this many bytes wait: a burst
        // of events shares its system calls, and what a socket keeps between bursts stays small.
        .write_buffer_size(WRITE_CHUNK)
        // A client that stops reading is dropped by the sender's timeout, long before this.
        .max_write_buffer_size(4 * MAX_MESSAGE_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let stream = WebSocketStream::from_partially_read(io, read, Role::Server, Some(config)).await;
    let (sink, incoming) = stream.split();
    (
        Socket {
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
        },
        incoming,
    )
}

impl Socket {
    /// Sends `texts` in order, in as few writes as they fit in.
    pub async fn texts(&self, texts: Vec<String>) -> Result<(), Closed> {
        let mut sink = self.sink.lock().await;
        for text in texts {
            sink.feed(Message::text(text)).await.map_err(|_| Closed)?;
        }
        sink.flush().await.map_err(|_| Closed)
    }

    pub async fn ping(&self) -> Result<(), Closed> {
        self.send(Message::Ping(Default::default())).await
    }

    /// Sends a close frame (`code` and `reason`, or none); the connection ends with its tasks.
    /// Gives up after [`SEND_TIMEOUT`], like every send but `texts`, which its caller bounds.
    pub async fn close(&self, close: Option<(u16, String)>) {
        let frame = close.map(|(code, reason)| CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        });
        let _ = self.send(Message::Close(frame)).await;
    }

    /// Bounded by [`SEND_TIMEOUT`]: a ping or close frame to a client that stopped reading must
    /// not hold its task (and the socket with it) for good.
    async fn send(&self, message: Message) -> Result<(), Closed> {
        let send = async { self.sink.lock().await.send(message).await };
        match tokio::time::timeout(SEND_TIMEOUT, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Closed),
        }
    }
}
