//! A slot after `101 Switching Protocols` (feature `ws`): frames in from the request buffer,
//! frames out through the socket, and the bounds on a peer that stops cooperating (the send
//! deadline, the ping after a silent heartbeat, the close when no pong comes). The frame format
//! and the handler-facing types are in [`crate::ws`].
//!
//! The request buffer holds, from its start, the message being reassembled (already unmasked,
//! `assembled` bytes) and then the raw bytes not yet parsed. A frame is acted on only once it is
//! whole in the buffer and the socket has room for what it may cause (a pong, a close, a reply
//! as large as a message): until then the slot reads no more, so TCP's window pushes back.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::{peer_closed, Cx, Sending, Slot, Step};
use crate::handler::{Router, Token};
use crate::ws::{self, close, op, Message, Sender};

/// Frames parsed per service of a slot at most (more wait for the next poll).
const FRAMES_PER_STEP: usize = 64;

/// The WebSocket part of a slot's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// The last time a frame came in, or a ping went out (then `pinged`).
    heard: Instant,
    /// The last time bytes went into the socket or its queue shrank.
    progress: Instant,
    /// Bytes at the start of the buffer: the message being reassembled, unmasked.
    assembled: u32,
    /// The socket's send queue at the last look.
    queued: u32,
    /// The opcode (text or binary) of the message being reassembled; 0 between messages.
    partial: u8,
    /// `ws_open` was called (and so `ws_close` will be).
    opened: bool,
    /// A ping went out at `heard` and no frame came since.
    pinged: bool,
}

impl Conn {
    pub(crate) fn new(now: Instant) -> Conn {
        Conn {
            heard: now,
            progress: now,
            assembled: 0,
            queued: 0,
            partial: 0,
            opened: false,
            pinged: false,
        }
    }

    /// When the slot must be looked at again: its heartbeat, and its send deadline.
    pub(crate) fn deadline(&self, config: &crate::Config) -> Instant {
        let beat = self.heard + config.stream_heartbeat;
        if self.queued > 0 {
            beat.min(self.progress + config.send_timeout)
        } else {
            beat
        }
    }
}

/// What one frame did.
enum Frame {
    /// Acted on; look for the next.
    Done,
    /// Not whole yet, or no room for its answer: wait for the network.
    Wait,
    /// The connection ends: the close code sent (a close frame went out when it fitted).
    End(u16),
}

/// Removes `buf[from..to]`, keeping what follows.
fn cut<const REQ: usize>(buf: &mut heapless::Vec<u8, REQ>, from: usize, to: usize) {
    let len = buf.len();
    buf.copy_within(to..len, from);
    buf.truncate(len - (to - from));
}

/// A close code a peer may send (RFC 6455 7.4, and IANA's registry: 1012-1014 are defined;
/// 1004-1006 and 1015 must never be sent).
fn valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl<const REQ: usize, const HEAD: usize> Slot<REQ, HEAD> {
    /// One step of a WebSocket slot (state `Send`, body `Sending::WebSocket`).
    pub(super) fn ws_step(&mut self, socket: &mut tcp::Socket, cx: &mut Cx) -> Step {
        let now = cx.now;
        let port = cx.config.port;
        let Sending::WebSocket {
            route,
            mut token,
            mut conn,
        } = self.body
        else {
            return Step::Wait(false);
        };
        if !socket.may_send() {
            // The peer reset or closed its receive side.
            self.ws_end(cx.router, route, token, &mut conn, close::ABNORMAL);
            self.log.finish(self.peer_ep(), now, "aborted by peer");
            self.relisten(socket, port, now);
            return Step::Wait(true);
        }
        let mut moved = 0;
        let mut read = 0;
        let mut capped = false;
        // The 101's head first.
        if self.out_sent < self.out.len() {
            let n = socket.send_slice(&self.out[self.out_sent..]).unwrap_or(0);
            self.out_sent += n;
            moved += n;
        }
        let mut end = None;
        // Frames were taken from the buffer: the socket may hold more than the buffer took.
        let mut consumed = false;
        if self.out_sent == self.out.len() {
            if !conn.opened {
                conn.opened = true;
                let mut tx = Sender::new(socket);
                if let Some(h) = cx.router.handler(route) {
                    h.ws_open(&mut token, &mut tx);
                }
                moved += tx.sent;
            }
            // Bytes read are activity, not progress: only what goes into the socket or leaves
            // its queue keeps the send deadline away (a peer that reads nothing but sends
            // pongs must still meet it).
            read = self.fill(socket);
            // Whole frames may remain in the buffer after the cap: step again (bounded by
            // the server's steps per poll) rather than wait for a segment that may not come.
            capped = true;
            for _ in 0..FRAMES_PER_STEP {
                match self.ws_frame(socket, cx, route, &mut token, &mut conn, &mut moved) {
                    Frame::Done => consumed = true,
                    Frame::Wait => {
                        capped = false;
                        break;
                    }
                    Frame::End(code) => {
                        end = Some(code);
                        capped = false;
                        break;
                    }
                }
            }
            if end.is_none() && peer_closed(socket) && !self.ws_frame_waits(&conn) {
                // The peer's FIN without a close frame (one already whole in the buffer, and
                // waiting for room to answer, is still acted on: the send deadline bounds it).
                self.ws_end(cx.router, route, token, &mut conn, close::ABNORMAL);
                self.log
                    .finish(self.peer_ep(), now, "ended without a close frame");
                self.close(socket, now);
                self.body = Sending::WebSocket { route, token, conn };
                return Step::Wait(true);
            }
            if end.is_none() {
                end = self.ws_heartbeat(socket, now, cx.config, &mut conn, &mut moved);
            }
            if end.is_none() {
                // What the handler has for every connection of its route.
                let n = socket
                    .send(|buf| {
                        let n = cx.router.stream(route, &mut token, buf, false);
                        (n, n)
                    })
                    .unwrap_or(0);
                self.log.bytes += n;
                moved += n;
            }
        }
        if let Some(code) = end {
            self.ws_end(cx.router, route, token, &mut conn, code);
            self.log.finish(self.peer_ep(), now, "");
            self.close(socket, now);
            self.body = Sending::WebSocket { route, token, conn };
            return Step::Wait(true);
        }
        let queued = socket.send_queue() as u32;
        if moved > 0 || queued < conn.queued {
            conn.progress = now;
        }
        conn.queued = queued;
        if queued > 0 && now >= conn.progress + cx.config.send_timeout {
            // The peer stopped reading.
            cx.stats.timeouts += 1;
            self.ws_end(cx.router, route, token, &mut conn, close::ABNORMAL);
            self.log.finish(self.peer_ep(), now, "send timeout");
            self.relisten(socket, port, now);
            return Step::Wait(true);
        }
        self.body = Sending::WebSocket { route, token, conn };
        if consumed && (socket.can_recv() || capped) {
            // Read on now rather than at the next segment or ACK, which may be far off.
            return Step::Again;
        }
        Step::Wait(moved + read > 0)
    }

    /// A whole frame is in the buffer, waiting for room in the socket.
    fn ws_frame_waits(&self, conn: &Conn) -> bool {
        let at = conn.assembled as usize;
        match ws::parse_header(&self.buf[at..]) {
            Ok(Some(h)) => (self.buf.len() - at) as u64 >= h.header_len as u64 + h.len,
            _ => false,
        }
    }

    /// Parses and acts on the frame at the start of the unparsed bytes.
    fn ws_frame(
        &mut self,
        socket: &mut tcp::Socket,
        cx: &mut Cx,
        route: usize,
        token: &mut Token,
        conn: &mut Conn,
        moved: &mut usize,
    ) -> Frame {
        let at = conn.assembled as usize;
        let h = match ws::parse_header(&self.buf[at..]) {
            Ok(Some(h)) => h,
            Ok(None) => return Frame::Wait,
            Err(code) => return self.ws_fail(socket, code, moved),
        };
        let Some(mask) = h.mask else {
            crate::logging::debug!("{}: unmasked WebSocket frame", self.peer());
            return self.ws_fail(socket, close::PROTOCOL, moved);
        };
        match (h.opcode, conn.partial) {
            (op::CONTINUATION, 0) | (op::TEXT | op::BINARY, op::TEXT | op::BINARY) => {
                crate::logging::debug!("{}: WebSocket fragments out of order", self.peer());
                return self.ws_fail(socket, close::PROTOCOL, moved);
            }
            _ => {}
        }
        if !h.is_control() && at as u64 + h.len > ws::max_message(REQ) as u64 {
            crate::logging::debug!("{}: WebSocket message over the buffer", self.peer());
            return self.ws_fail(socket, close::TOO_BIG, moved);
        }
        // Fits in the buffer: checked above (a control frame is at most 125 bytes).
        let len = h.len as usize;
        let start = at + h.header_len;
        if self.buf.len() < start + len {
            return Frame::Wait;
        }
        let room = socket.send_capacity().saturating_sub(socket.send_queue());
        let need = match h.opcode {
            op::PING | op::CLOSE => 2 + len,
            op::PONG => 0,
            // A whole message may be answered with one as large.
            _ if h.fin => socket
                .send_capacity()
                .min(ws::max_message(REQ) + ws::MAX_HEADER),
            _ => 0,
        };
        if room < need {
            return Frame::Wait;
        }
        ws::unmask(&mut self.buf[start..start + len], mask);
        conn.heard = cx.now;
        conn.pinged = false;
        match h.opcode {
            op::PING => {
                let mut tx = Sender::new(socket);
                // Room checked above.
                let _ = tx.frame(op::PONG, &self.buf[start..start + len]);
                *moved += tx.sent;
                cut(&mut self.buf, at, start + len);
                Frame::Done
            }
            op::PONG => {
                cut(&mut self.buf, at, start + len);
                Frame::Done
            }
            op::CLOSE => {
                let payload = &self.buf[start..start + len];
                let code = match payload {
                    [] => None,
                    [a, b, reason @ ..] => {
                        let code = u16::from_be_bytes([*a, *b]);
                        if !valid_code(code) {
                            return self.ws_fail(socket, close::PROTOCOL, moved);
                        }
                        if core::str::from_utf8(reason).is_err() {
                            return self.ws_fail(socket, close::INVALID_DATA, moved);
                        }
                        Some(code)
                    }
                    [_] => return self.ws_fail(socket, close::PROTOCOL, moved),
                };
                // The answer echoes the code (RFC 6455 5.5.1).
                let mut tx = Sender::new(socket);
                let _ = match code {
                    Some(c) => tx.frame(op::CLOSE, &c.to_be_bytes()),
                    None => tx.frame(op::CLOSE, &[]),
                };
                *moved += tx.sent;
                Frame::End(code.unwrap_or(close::NORMAL))
            }
            _ => {
                // A data frame: its payload joins the message, its header goes.
                self.buf.copy_within(start..start + len, at);
                cut(&mut self.buf, at + len, start + len);
                // At most REQ: checked above.
                conn.assembled += len as u32;
                if h.opcode != op::CONTINUATION {
                    conn.partial = h.opcode;
                }
                if !h.fin {
                    return Frame::Done;
                }
                let whole = conn.assembled as usize;
                let text = conn.partial == op::TEXT;
                conn.partial = 0;
                conn.assembled = 0;
                let data = &self.buf[..whole];
                let msg = if text {
                    match core::str::from_utf8(data) {
                        Ok(s) => Message::Text(s),
                        Err(_) => {
                            crate::logging::debug!("{}: WebSocket text not UTF-8", self.peer());
                            return self.ws_fail(socket, close::INVALID_DATA, moved);
                        }
                    }
                } else {
                    Message::Binary(data)
                };
                let mut tx = Sender::new(socket);
                if let Some(handler) = cx.router.handler(route) {
                    handler.ws_message(token, msg, &mut tx);
                }
                *moved += tx.sent;
                self.log.bytes += tx.sent;
                cx.news = true;
                cut(&mut self.buf, 0, whole);
                Frame::Done
            }
        }
    }

    /// A frame broke the protocol: a close frame with `code`, then the connection ends.
    fn ws_fail(&mut self, socket: &mut tcp::Socket, code: u16, moved: &mut usize) -> Frame {
        let mut tx = Sender::new(socket);
        let _ = tx.frame(op::CLOSE, &code.to_be_bytes());
        *moved += tx.sent;
        Frame::End(code)
    }

    /// The ping after a silent heartbeat, and the end when another heartbeat passes without
    /// a frame from the peer.
    fn ws_heartbeat(
        &mut self,
        socket: &mut tcp::Socket,
        now: Instant,
        config: &crate::Config,
        conn: &mut Conn,
        moved: &mut usize,
    ) -> Option<u16> {
        let beat = config.stream_heartbeat;
        if now < conn.heard + beat {
            return None;
        }
        if conn.pinged {
            crate::logging::debug!("{}: no pong to the WebSocket ping", self.peer());
            let mut tx = Sender::new(socket);
            let _ = tx.frame(op::CLOSE, &close::GOING_AWAY.to_be_bytes());
            *moved += tx.sent;
            return Some(close::GOING_AWAY);
        }
        // A ping that does not fit counts as sent: the send deadline ends a connection whose
        // peer reads nothing.
        let mut tx = Sender::new(socket);
        let _ = tx.frame(op::PING, b"");
        *moved += tx.sent;
        conn.heard = now;
        conn.pinged = true;
        None
    }

    /// Calls the handler's `ws_close` once, if `ws_open` was called.
    pub(super) fn ws_end(
        &mut self,
        router: &mut Router,
        route: usize,
        token: Token,
        conn: &mut Conn,
        code: u16,
    ) {
        if conn.opened {
            conn.opened = false;
            if let Some(h) = router.handler(route) {
                h.ws_close(token, code);
            }
        }
        self.body = Sending::WebSocket {
            route,
            token,
            conn: *conn,
        };
    }

    /// The slot gives way (a waiting client, the server stopping): a close frame 1001 between
    /// messages and the handler told; the caller closes the connection.
    pub(super) fn ws_going_away(&mut self, socket: &mut tcp::Socket, router: &mut Router) {
        let Sending::WebSocket {
            route,
            token,
            mut conn,
        } = self.body
        else {
            return;
        };
        if self.out_sent == self.out.len() {
            let _ = Sender::new(socket).frame(op::CLOSE, &close::GOING_AWAY.to_be_bytes());
        }
        self.ws_end(router, route, token, &mut conn, close::GOING_AWAY);
    }

    /// The connection is aborted (the server's grace ran out): the handler is told.
    pub(super) fn ws_abort(&mut self, router: &mut Router) {
        if let Sending::WebSocket {
            route,
            token,
            mut conn,
        } = self.body
        {
            self.ws_end(router, route, token, &mut conn, close::ABNORMAL);
        }
    }
}
