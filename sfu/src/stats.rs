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
    /// Join time: from the SFU accepting a join (the Transport is created when
    /// signaling's `join` is accepted) to the Transport's first ICE + DTLS
    /// `connected` state, seconds. Transports that never connect are not observed.
    pub join_seconds: JoinHistogram,
}

/// Upper bounds (seconds) of [`JoinHistogram`]'s buckets; the last bucket is `+Inf`.
pub const JOIN_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];

/// A fixed-bucket histogram of lock-free counters (one writer: the media task).
#[derive(Debug, Default)]
pub struct JoinHistogram {
    /// Per-bucket counts (not cumulative): `buckets[i]` counts observations
    /// `<= JOIN_BUCKETS[i]` and above the previous bound; the last one is `+Inf`.
    buckets: [AtomicU64; JOIN_BUCKETS.len() + 1],
    count: AtomicU64,
    /// Sum of observations, microseconds.
    sum_micros: AtomicU64,
}

impl JoinHistogram {
    /// Records one join time.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = JOIN_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(JOIN_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// `(sum in seconds, count, [(upper bound in seconds, count in that bucket)])`,
    /// buckets not cumulative, the last bound `f64::INFINITY` (`+Inf`), as
    /// prometheus-client's `encode_histogram` takes them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> =
            JOIN_BUCKETS.iter().zip(&self.buckets).map(|(b, c)| (*b, c.load(Ordering::Relaxed))).collect();
        buckets.push((f64::INFINITY, self.buckets[JOIN_BUCKETS.len()].load(Ordering::Relaxed)));
        let count = self.count.load(Ordering::Relaxed);
        (self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6, count, buckets)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn join_histogram_buckets_and_sum() {
        let h = JoinHistogram::default();
        h.observe(Duration::from_millis(10)); // ≤ 0.05
        h.observe(Duration::from_millis(500)); // ≤ 0.5 (bounds are inclusive)
        h.observe(Duration::from_millis(501)); // ≤ 1.0
        h.observe(Duration::from_secs(100)); // +Inf
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 101.011).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.len(), JOIN_BUCKETS.len() + 1);
        let at = |le: f64| buckets.iter().find(|(b, _)| *b == le).unwrap().1;
        assert_eq!((at(0.05), at(0.5), at(1.0), at(f64::INFINITY)), (1, 1, 1, 1));
        assert_eq!(buckets.iter().map(|(_, c)| c).sum::<u64>(), 4, "not cumulative");
    }
}
