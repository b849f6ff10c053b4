//! The recorder tap: what the media task hands to the evidence recorder.
//!
//! Recording is a per-session state in the media task (started, paused by the
//! mediator or automatically for want of consent, stopped). While it runs, every
//! admitted Producer's packets are also handed to the recorder like to one more
//! Consumer: decrypted RTP (header fields + the *same* payload `Bytes`, no copy),
//! with `try_send` on a bounded channel. A full queue drops the packet and counts
//! it (`SfuStats::recorder_dropped`); a video track then waits for its next
//! keyframe, so a stalled recorder never stalls a room and never records a broken
//! picture. Control messages (start, pause, consent, …) keep [`RECORD_HEADROOM`]
//! places of the queue for themselves.
//!
//! The receiving end (`fengqiao-recorder`'s live recorder) answers through the
//! [`Sfu`](crate::Sfu) handle: [`Sfu::recorder_keyframe`](crate::Sfu::recorder_keyframe)
//! (PLI before a segment cut) and [`Sfu::recording_closed`](crate::Sfu::recording_closed)
//! (the integrity check value at stop, shown to everyone).

use crate::{ParticipantId, ParticipantInfo, ProducerId, RoomId};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Capacity of the recorder queue, messages (packets and controls).
pub const RECORD_QUEUE: usize = 8192;
/// Places of the queue only control messages may take: a packet finding fewer free
/// places is dropped instead.
pub const RECORD_HEADROOM: usize = 256;

/// The session a recorder message belongs to (the session folder's id and the room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecSession {
    /// Session id: the invite token's `session_id`, else the room id.
    pub id: Arc<str>,
    /// The room.
    pub room: RoomId,
    /// The case id, when the session's tokens carry one.
    pub case_id: Option<String>,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecKind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8, H.264).
    Video,
}

/// One RTP packet of a recorded Producer, as received (decrypted, before any rewriting).
#[derive(Debug, Clone)]
pub struct RecPacket {
    /// The session.
    pub session: Arc<str>,
    /// The Producer (track).
    pub producer: ProducerId,
    /// Its publisher.
    pub participant: ParticipantId,
    /// Audio or video.
    pub kind: RecKind,
    /// Codec name as in manifests: `VP8`, `H264`, `Opus`.
    pub codec: &'static str,
    /// RTP clock rate, Hz.
    pub clock_rate: u32,
    /// The room the publisher is in: `main` or a side room.
    pub room: Arc<str>,
    /// RTP payload type as received.
    pub payload_type: u8,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (clock `clock_rate`).
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The publisher's SSRC.
    pub ssrc: u32,
    /// RFC 6464 audio level of the packet in −dBov (0 loudest, 127 silence), if the
    /// extension was negotiated.
    pub level: Option<u8>,
    /// The payload (shared with the Consumers, not copied).
    pub payload: Bytes,
    /// Server time of arrival.
    pub arrival: SystemTime,
}

impl RecPacket {
    /// The packet as RTP bytes (RFC 3550 §5.1, no CSRC, no extension): 12-byte
    /// header + payload, written into `out` (cleared first).
    pub fn write_rtp(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// What the media task tells the recorder.
#[derive(Debug, Clone)]
pub enum RecordMsg {
    /// The mediator started recording. `participants` are everyone admitted now,
    /// `consents` the answers given so far (the mediator's start counts as theirs).
    Start {
        /// The session.
        session: RecSession,
        /// The mediator.
        actor: ParticipantId,
        /// Server time.
        time: SystemTime,
        /// Everyone admitted.
        participants: Vec<ParticipantInfo>,
    },
    /// A participant is present in the recorded session (admitted after the start).
    Participant {
        /// The session id.
        session: Arc<str>,
        /// Who.
        info: ParticipantInfo,
        /// Server time.
        time: SystemTime,
    },
    /// A consent answer (true = accept).
    Consent {
        /// The session id.
        session: Arc<str>,
        /// Who answered.
        participant: ParticipantId,
        /// Accept (true) or refuse.
        accept: bool,
        /// Server time.
        time: SystemTime,
    },
    /// Recording paused; `actor` `None` = the server by itself (consent).
    Pause {
        /// The session id.
        session: Arc<str>,
        /// The mediator, or `None` for an automatic pause.
        actor: Option<ParticipantId>,
        /// Why (SPC 2017 art. 3).
        reason: String,
        /// Server time.
        time: SystemTime,
    },
    /// Recording resumed; `actor` `None` = automatically (everyone consented).
    Resume {
        /// The session id.
        session: Arc<str>,
        /// The mediator, or `None`.
        actor: Option<ParticipantId>,
        /// Server time.
        time: SystemTime,
    },
    /// A participant changed rooms (`main` or a side room).
    Moved {
        /// The session id.
        session: Arc<str>,
        /// Who.
        participant: ParticipantId,
        /// Where to.
        room: String,
        /// Server time.
        time: SystemTime,
    },
    /// Recording stopped (by the mediator, the session's end, or shutdown).
    Stop {
        /// The session id.
        session: Arc<str>,
        /// Who stopped it (`None`: the server, e.g. the room emptied).
        actor: Option<ParticipantId>,
        /// Server time.
        time: SystemTime,
        /// `Some(reason)`: the server is shutting down; the record is closed as an
        /// interruption (`interrupted` entry, docs/evidence.md) rather than `stop` + `end`.
        interrupted: Option<String>,
    },
    /// A recorded packet.
    Packet(RecPacket),
    /// An RTCP sender report (RFC 3550 §6.4.1) of a recorded Producer.
    SenderReport {
        /// The session id.
        session: Arc<str>,
        /// The Producer.
        producer: ProducerId,
        /// NTP timestamp (64-bit, seconds since 1900 in the high 32 bits).
        ntp: u64,
        /// The RTP timestamp matching `ntp`.
        rtp_ts: u32,
        /// Server time of arrival.
        arrival: SystemTime,
    },
    /// A recorded Producer ended (its publisher left or stopped the track).
    TrackEnded {
        /// The session id.
        session: Arc<str>,
        /// The Producer.
        producer: ProducerId,
    },
}

/// Sending end of the recorder queue (held by the media task).
#[derive(Clone, Debug)]
pub struct RecordSink {
    tx: SyncSender<RecordMsg>,
    depth: Arc<AtomicUsize>,
}

/// Receiving end of the recorder queue (the recorder's thread).
#[derive(Debug)]
pub struct RecordSource {
    rx: Receiver<RecordMsg>,
    depth: Arc<AtomicUsize>,
}

/// A new recorder queue of [`RECORD_QUEUE`] messages.
pub fn record_queue() -> (RecordSink, RecordSource) {
    let (tx, rx) = std::sync::mpsc::sync_channel(RECORD_QUEUE);
    let depth = Arc::new(AtomicUsize::new(0));
    (RecordSink { tx, depth: depth.clone() }, RecordSource { rx, depth })
}

impl RecordSink {
    /// Queues a packet unless fewer than [`RECORD_HEADROOM`] places are free; never blocks.
    /// Returns false when the packet was dropped.
    pub fn packet(&self, p: RecPacket) -> bool {
        if self.depth.load(Ordering::Relaxed) + RECORD_HEADROOM >= RECORD_QUEUE {
            return false;
        }
        self.send(RecordMsg::Packet(p))
    }

    /// Queues any message; never blocks. Returns false when the queue was full or closed.
    pub fn send(&self, m: RecordMsg) -> bool {
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Messages queued and not yet taken by the recorder.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The shared depth counter, for readers that must not hold the sender.
    pub(crate) fn depth_counter(&self) -> Arc<AtomicUsize> {
        self.depth.clone()
    }
}

impl RecordSource {
    /// The next message, waiting at most `timeout`. `Err(true)` when every sender is
    /// gone (the media task stopped), `Err(false)` on timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<RecordMsg, bool> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Ok(m)
            }
            Err(RecvTimeoutError::Timeout) => Err(false),
            Err(RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// Messages queued and not yet taken.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// The recording state of a session as participants see it (`recording` signaling message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStatus {
    /// `off` (never started), `recording`, `paused`, `stopped`.
    pub state: &'static str,
    /// Why it is paused (the mediator's reason, or `consent refused by <id>` /
    /// `awaiting consent of <id>`).
    pub reason: Option<String>,
    /// Each present participant's answer: `Some(true)` accept, `Some(false)` refuse,
    /// `None` not answered yet.
    pub consent: Vec<(ParticipantId, Option<bool>)>,
    /// At `stopped`: the session's integrity check value (manifest chain head, hex).
    pub integrity: Option<String>,
}

/// A mediator's recording control (`record` signaling message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordAction {
    /// Start recording (once per session: a stopped record is closed for good).
    Start,
    /// Pause, with the reason the rules ask for (SPC 2017 art. 3).
    Pause(String),
    /// Resume after a mediator's pause.
    Resume,
    /// Stop: files are closed, hashed and signed; the integrity check value follows.
    Stop,
}
