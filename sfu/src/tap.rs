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
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// The SFU's tap: PLI and FIR reach the application, nothing else.
pub type KeyframeRequestTap = RtcpTap;

impl RtcpTap {
    /// A tap delivering the compound packets for which `wanted` is true.
    pub fn new(wanted: fn(&[Box<dyn rtc::rtcp::Packet>]) -> bool) -> Self {
        Self { wanted, reads: VecDeque::new(), writes: VecDeque::new() }
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
