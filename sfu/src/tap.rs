//! The interceptor that lets keyframe requests through to the SFU.
//!
//! `rtc`'s interceptor chain ends in a terminus that swallows inbound RTCP unless
//! a packet carries `Attribute::DeliverToApplication`. This interceptor sits at the
//! application end of the chain (after the NACK responder and report
//! interceptors have seen everything) and marks compound RTCP packets that hold a
//! PLI (RFC 4585 §6.3.1) or FIR (RFC 5104 §4.3.1), so the SFU can turn them into
//! a debounced keyframe request upstream. Receiver reports and NACKs stay with
//! the chain: NACKs are answered from the NACK responder's send history.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Where the tap sits (an `rtc` interceptor `Slot`): above the jitter buffer (13 000), below nothing else.
pub const TAP_SLOT: usize = 14_000;

/// Marks the inbound compound RTCP packets `wanted` accepts for the application.
/// The SFU's chain uses [`KeyframeRequestTap`] (PLI/FIR only); test clients use
/// [`RtcpTap::new`] to see other feedback the SFU sends them, e.g. receiver reports.
pub struct RtcpTap {
    wanted: fn(&[Box<dyn rtc::rtcp::Packet>]) -> bool,
    /// Count the packets inbound NACKs ask for (the SFU's own chain only).
    count_nacks: bool,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// The SFU's tap: PLI and FIR reach the application, nothing else.
pub type KeyframeRequestTap = RtcpTap;

impl RtcpTap {
    /// A tap delivering the compound packets for which `wanted` is true.
    pub fn new(wanted: fn(&[Box<dyn rtc::rtcp::Packet>]) -> bool) -> Self {
        Self { wanted, count_nacks: false, reads: VecDeque::new(), writes: VecDeque::new() }
    }

    /// The SFU's tap: [`sfu_wants`] reaches the application, and every inbound generic
    /// NACK is counted ([`nack_packets_in`]) before the NACK responder answers it.
    pub fn sfu() -> Self {
        Self { count_nacks: true, ..Self::new(sfu_wants) }
    }
}

impl Default for RtcpTap {
    /// Keyframe requests only ([`asks_for_keyframe`]).
    fn default() -> Self {
        Self::new(asks_for_keyframe)
    }
}

/// Whether a compound RTCP packet asks for a keyframe.
pub fn asks_for_keyframe(pkts: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    pkts.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

static NACK_PACKETS_IN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Packets subscribers asked to be retransmitted with generic NACKs (RFC 4585
/// §6.2.1: each NACK pair names a packet id plus up to 16 more in its bitmask), over
/// every Transport of this process since start. The NACK responder answers them
/// from its send history; `rtc` 0.21 does not report how many it could resend.
pub fn nack_packets_in() -> u64 {
    NACK_PACKETS_IN.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_nacks(pkts: &[Box<dyn rtc::rtcp::Packet>]) -> u64 {
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    pkts.iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
        .flat_map(|n| n.nacks.iter())
        .map(|pair| 1 + u64::from(pair.lost_packets.count_ones()))
        .sum()
}

/// What the SFU's own chain delivers: keyframe requests, and sender reports
/// (RFC 3550 §6.4.1; the recorder places tracks on the session timeline by them).
pub fn sfu_wants(pkts: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    asks_for_keyframe(pkts) || sender_report(pkts).is_some()
}

/// The first sender report in a compound RTCP packet: (SSRC, NTP time, RTP time).
pub fn sender_report(pkts: &[Box<dyn rtc::rtcp::Packet>]) -> Option<(u32, u64, u32)> {
    pkts.iter().find_map(|p| {
        p.as_any()
            .downcast_ref::<rtc::rtcp::sender_report::SenderReport>()
            .map(|sr| (sr.ssrc, sr.ntp_time, sr.rtp_time))
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            if tracing::enabled!(tracing::Level::TRACE) {
                for p in pkts {
                    tracing::trace!(rtcp = ?p.header().packet_type, ssrcs = ?p.destination_ssrc(), "inbound RTCP");
                }
            }
            if self.count_nacks {
                let n = count_nacks(pkts);
                if n > 0 {
                    NACK_PACKETS_IN.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if (self.wanted)(pkts) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.writes.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
