//! Counters the media task updates and anyone may read (relaxed atomics: one
//! writer, approximate readers).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live SFU counters. Gauges (`rooms`, `participants`, ...) are current values;
/// everything else counts up from start.
#[derive(Debug, Default)]
pub struct SfuStats {
    /// Rooms open now.
    pub rooms: AtomicU64,
    /// Participants (Transports) now.
    pub participants: AtomicU64,
    /// Producers (incoming tracks) now.
    pub producers: AtomicU64,
    /// Consumers (outgoing tracks) now.
    pub consumers: AtomicU64,
    /// Datagrams received on the media socket.
    pub datagrams_in: AtomicU64,
    /// Bytes received on the media socket.
    pub bytes_in: AtomicU64,
    /// Datagrams sent.
    pub datagrams_out: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// RTP packets received from Producers.
    pub rtp_in: AtomicU64,
    /// RTP packets handed to Consumers.
    pub rtp_out: AtomicU64,
    /// Datagrams from an address no Transport owns (dropped).
    pub dropped_unknown_peer: AtomicU64,
    /// Datagrams the WebRTC stack rejected (malformed, failed SRTP auth...).
    pub dropped_malformed: AtomicU64,
    /// Sends the socket refused (buffer full): the Consumer then waits for a keyframe.
    pub dropped_send: AtomicU64,
    /// Video packets held back from a Consumer that waits for a keyframe.
    pub dropped_waiting_keyframe: AtomicU64,
    /// Packets a Consumer's Transport refused (`write_rtp` error).
    pub dropped_consumer_error: AtomicU64,
    /// Keyframe requests (PLI/FIR) received from subscribers.
    pub keyframe_requests_in: AtomicU64,
    /// Keyframe requests sent to publishers (debounced, ≥ 500 ms apart per Producer).
    pub keyframe_requests_out: AtomicU64,
    /// Transports closed by ICE/DTLS failure.
    pub transport_failures: AtomicU64,
    /// Recorded packets dropped because the recorder's queue was full.
    pub recorder_dropped: AtomicU64,
    /// Packets handed to the recorder.
    pub recorder_packets: AtomicU64,
    /// Sessions being recorded now (started and not stopped; paused ones count).
    pub recordings_active: AtomicU64,
}

impl SfuStats {
    /// Reads one counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn sub(c: &AtomicU64, n: u64) {
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }
    pub(crate) fn set(c: &AtomicU64, n: u64) {
        c.store(n, Ordering::Relaxed);
    }
}
