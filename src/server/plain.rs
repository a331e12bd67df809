//! A plain TCP connection whose WebSocket frames a fan-out may write itself.
//!
//! A fan-out writes a chat message to every idle socket in its room, one system call each
//! (`transport::SinkWire`). Through the WebSocket layers that write takes the split socket's
//! lock, frames the message into the socket's own buffer, registers two wakers and checks the
//! socket's readiness, about a tenth of the server's work per delivery. On plain TCP the frame
//! is a two-to-ten-byte header and the message's shared bytes, so [`PlainSocket`] writes the
//! two straight to the socket with one system call instead.
//!
//! It may do so only between whole frames. The WebSocket layer writes through
//! [`PlainStream`], which records when a write of its did not go out whole (`held`: its buffer
//! still holds part of a frame) until its next flush, which it only reaches once its buffer is
//! empty. A direct write that does not go out whole leaves the rest with the stream, which
//! writes it before anything else and on its next flush. Both sides decide under one lock.
//!
//! The way closes for good once the socket is closing, since no data frame may follow a close
//! frame: the transport closes it ([`PlainSocket::close`]) before it writes the server's close
//! frame and as soon as it has read the client's; the stream closes it when the WebSocket
//! layer begins a write with a close frame (the answer its reading half writes to a client's
//! close, first in its buffer unless a pong before it did not go out whole, when `held` keeps
//! the way shut) and when it is dropped, so no direct write can reach a closed socket.

use bytes::{Buf, Bytes};
use std::io::{IoSlice, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use switchboard_hub::WireSend;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Frames up to this size are copied into one buffer for their direct write (a chat message's
/// frame is a few hundred bytes).
const COPIED_FRAME_BYTES: usize = 1024;

/// The first byte of a final close frame, as the WebSocket layer writes it.
const CLOSE_FRAME: u8 = 0x88;

/// What the stream and the direct writes share.
#[derive(Default)]
struct Writes {
    /// Direct writes may go out: the stream is open (it closes its descriptor when dropped)
    /// and the WebSocket layer has not begun to write a close frame.
    open: bool,
    /// The WebSocket layer's last write did not go out whole, and it has not flushed since:
    /// part of a frame may still wait in its buffer.
    held: bool,
    /// The end of a direct write that the socket did not take: it goes out first.
    rest: Bytes,
}

/// One accepted plain TCP connection, as the HTTP and WebSocket layers read and write it.
pub struct PlainStream {
    tcp: TcpStream,
    writes: Arc<Mutex<Writes>>,
}

/// The way for a fan-out to write frames to an upgraded plain connection.
#[derive(Clone)]
pub struct PlainSocket {
    fd: std::os::fd::RawFd,
    writes: Arc<Mutex<Writes>>,
}

fn lock(writes: &Mutex<Writes>) -> MutexGuard<'_, Writes> {
    writes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PlainStream {
    pub fn new(tcp: TcpStream) -> Self {
        let writes = Arc::new(Mutex::new(Writes {
            open: true,
            ..Writes::default()
        }));
        Self { tcp, writes }
    }

    /// The way for fan-outs to write to this connection once it is a WebSocket.
    pub fn socket(&self) -> PlainSocket {
        use std::os::fd::AsRawFd;
        PlainSocket {
            fd: self.tcp.as_raw_fd(),
            writes: self.writes.clone(),
        }
    }

    /// Writes what is left of a direct write.
    fn finish_rest(
        tcp: &mut TcpStream,
        writes: &mut Writes,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        while !writes.rest.is_empty() {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &writes.rest))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            writes.rest.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn write_with(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        len: usize,
        first: Option<u8>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut writes = lock(&this.writes);
        match Self::finish_rest(&mut this.tcp, &mut writes, cx) {
            Poll::Ready(Ok(())) => {}
            waiting => {
                // The layer keeps what it meant to write.
                writes.held = true;
                return waiting.map(|finished| finished.map(|()| 0));
            }
        }
        if first == Some(CLOSE_FRAME) {
            // Nothing may follow a close frame. (The rest of a write that did not go out whole
            // may begin with this byte by chance, which only closes the way early.)
            writes.open = false;
        }
        let written = write(Pin::new(&mut this.tcp), cx);
        if !matches!(written, Poll::Ready(Ok(n)) if n == len) {
            writes.held = true;
        }
        written
    }
}

impl Drop for PlainStream {
    fn drop(&mut self) {
        // Before the descriptor closes, under the lock: a direct write either finished or
        // sees the stream gone.
        lock(&self.writes).open = false;
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_with(cx, buf.len(), buf.first().copied(), |tcp, cx| {
            tcp.poll_write(cx, buf)
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        let first = bufs.iter().find_map(|buf| buf.first().copied());
        self.write_with(cx, len, first, |tcp, cx| tcp.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut writes = lock(&this.writes);
        ready!(Self::finish_rest(&mut this.tcp, &mut writes, cx))?;
        ready!(Pin::new(&mut this.tcp).poll_flush(cx))?;
        // The WebSocket layer flushes its stream only once its own buffer is empty.
        writes.held = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut writes = lock(&this.writes);
        ready!(Self::finish_rest(&mut this.tcp, &mut writes, cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// A WebSocket frame's header for an unmasked, final text frame of `len` bytes; returns the
/// buffer and how much of it is the header.
fn text_header(len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x81;
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

impl PlainSocket {
    /// Closes the way for good: the socket is closing, and nothing may follow its close frame.
    pub fn close(&self) {
        lock(&self.writes).open = false;
    }

    /// Writes `text` (UTF-8 JSON, as every frame the hub makes) as one text frame, without
    /// waiting. The caller holds the socket's writing half, so the WebSocket layer is not
    /// writing frames of its own meanwhile.
    pub fn try_send_text(&self, text: &Bytes) -> WireSend {
        // Every frame the hub makes is JSON it wrote itself, from text it read as UTF-8.
        debug_assert!(std::str::from_utf8(text).is_ok());
        let mut writes = lock(&self.writes);
        if !writes.open || writes.held || !writes.rest.is_empty() {
            return WireSend::Refused;
        }
        let (header, header_len) = text_header(text.len());
        let total = header_len + text.len();
        let written = if total <= COPIED_FRAME_BYTES {
            // One buffer: `send` costs the kernel less than `writev`'s way through the file
            // layer, and a small frame's copy costs less than that difference.
            let mut frame = [0u8; COPIED_FRAME_BYTES];
            frame[..header_len].copy_from_slice(&header[..header_len]);
            frame[header_len..total].copy_from_slice(text);
            self.write(&[IoSlice::new(&frame[..total])])
        } else {
            self.write(&[IoSlice::new(&header[..header_len]), IoSlice::new(text)])
        };
        match written {
            Ok(n) if n == total => WireSend::Sent,
            Ok(n) if n > 0 => {
                writes.rest = match n.checked_sub(header_len) {
                    // The message's own bytes, shared: nothing is copied.
                    Some(sent) => text.slice(sent..),
                    None => [&header[n..header_len], text].concat().into(),
                };
                WireSend::Unflushed
            }
            // Nothing went out (the socket is full, or failed): the frame goes through the
            // socket's queue, whose writer finds out which.
            _ => WireSend::Refused,
        }
    }

    /// Writes the parts of a frame with one system call.
    fn write(&self, frame: &[IoSlice<'_>]) -> std::io::Result<usize> {
        use std::os::fd::FromRawFd;
        // SAFETY: the descriptor is the stream's, which is open: `try_send_text` holds the
        // lock that the stream's `Drop` takes to mark itself closed before the descriptor
        // closes, and found it open. `ManuallyDrop` leaves the descriptor to the stream. The
        // descriptor is non-blocking (tokio's), so the write never waits.
        let tcp = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.fd) });
        match frame {
            [whole] => (&*tcp).write(whole),
            parts => (&*tcp).write_vectored(parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    /// A connection whose server side is a [`PlainStream`], both sides with small socket
    /// buffers, and the client side read as WebSocket frames.
    async fn connection() -> (PlainStream, WebSocketStream<TcpStream>) {
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        // Accepted sockets take the listening socket's buffer sizes.
        listening.set_send_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(1).unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (PlainStream::new(server), client)
    }

    fn text(len: usize, fill: char) -> Bytes {
        Bytes::from(fill.to_string().repeat(len))
    }

    /// `text` framed as the WebSocket layer would write it.
    fn framed(text: &Bytes) -> Vec<u8> {
        let (header, len) = text_header(text.len());
        [&header[..len], text].concat()
    }

    async fn next_text(client: &mut WebSocketStream<TcpStream>) -> String {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_direct_write_the_socket_cannot_take_whole_is_finished_before_anything_else() {
        let (mut stream, mut client) = connection().await;
        let socket = stream.socket();
        let big = text(1 << 20, 'a');
        assert_eq!(socket.try_send_text(&big), WireSend::Unflushed);
        // Its rest waits: nothing else may go out directly meanwhile.
        assert_eq!(socket.try_send_text(&text(10, 'b')), WireSend::Refused);
        // The WebSocket layer's next frame goes out after the rest, whole.
        let after = text(10, 'c');
        let reading = tokio::spawn(async move {
            let first = next_text(&mut client).await;
            let second = next_text(&mut client).await;
            (first, second, client)
        });
        stream.write_all(&framed(&after)).await.unwrap();
        stream.flush().await.unwrap();
        let (first, second, mut client) =
            tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
        assert_eq!(first.len(), big.len());
        assert!(first.bytes().all(|byte| byte == b'a'));
        assert_eq!(second, "cccccccccc");
        // Written out, the way is open again.
        assert_eq!(socket.try_send_text(&text(3, 'd')), WireSend::Sent);
        assert_eq!(next_text(&mut client).await, "ddd");
    }

    #[tokio::test]
    async fn a_write_of_the_websocket_layer_that_did_not_go_out_whole_holds_direct_writes_until_its_flush(
    ) {
        let (mut stream, mut client) = connection().await;
        let socket = stream.socket();
        let big = framed(&text(1 << 20, 'a'));
        let taken = stream.write(&big).await.unwrap();
        assert!(taken < big.len(), "the socket took all {taken} bytes");
        // The rest of that frame is still the layer's to write.
        assert_eq!(socket.try_send_text(&text(10, 'b')), WireSend::Refused);
        let reading = tokio::spawn(async move {
            let first = next_text(&mut client).await;
            (first, client)
        });
        stream.write_all(&big[taken..]).await.unwrap();
        // Written whole but not yet flushed: the layer may still hold part of a frame.
        assert_eq!(socket.try_send_text(&text(10, 'b')), WireSend::Refused);
        stream.flush().await.unwrap();
        let (first, mut client) = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
        assert_eq!(first.len(), 1 << 20);
        assert_eq!(socket.try_send_text(&text(3, 'd')), WireSend::Sent);
        assert_eq!(next_text(&mut client).await, "ddd");
    }

    #[tokio::test]
    async fn nothing_goes_out_directly_after_a_close_frame_once_closed_or_once_the_stream_is_gone()
    {
        let (mut stream, mut client) = connection().await;
        let socket = stream.socket();
        assert_eq!(socket.try_send_text(&text(3, 'a')), WireSend::Sent);
        // A close frame, code 1000.
        stream.write_all(&[0x88, 0x02, 0x03, 0xe8]).await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(socket.try_send_text(&text(3, 'b')), WireSend::Refused);
        assert_eq!(next_text(&mut client).await, "aaa");
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Ok(Message::Close(Some(close))))) => assert_eq!(u16::from(close.code), 1000),
            other => panic!("expected the close frame, got {other:?}"),
        }

        let (open_stream, _client) = connection().await;
        let socket = open_stream.socket();
        socket.close();
        assert_eq!(socket.try_send_text(&text(3, 'a')), WireSend::Refused);

        let (stream, _client) = connection().await;
        let socket = stream.socket();
        drop(stream);
        // The descriptor's number is free again, and the next one opened takes it (unless
        // another test's was quicker): a direct write must not reach that one either.
        let (reused, mut other_end) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(socket.try_send_text(&text(3, 'a')), WireSend::Refused);
        drop(reused);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut other_end, &mut got).unwrap();
        assert!(got.is_empty(), "{got:?} reached another descriptor");
    }

    #[test]
    fn text_headers_use_the_shortest_length_that_fits() {
        let (header, len) = text_header(125);
        assert_eq!(&header[..len], &[0x81, 125]);
        let (header, len) = text_header(126);
        assert_eq!(&header[..len], &[0x81, 126, 0, 126]);
        let (header, len) = text_header(65_535);
        assert_eq!(&header[..len], &[0x81, 126, 0xff, 0xff]);
        let (header, len) = text_header(65_536);
        assert_eq!(&header[..len], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
