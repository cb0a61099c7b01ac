//! Property: any message, split into fragments at any boundaries, with
//! pings between the fragments, and written in pieces cut anywhere, comes
//! out of the codec and the `MessageAssembler` (as the connection actor
//! uses it) identical, its pings in order, while the read buffer holds at
//! most one frame under the limit and the message is refused, never
//! delivered, when it exceeds the limit.

use feedvisor_test_support::websocket::{encode_frame, opcode, FIN};
use feedvisor_transport_api::{AssembleError, DataKind, MessageAssembler};
use proptest::prelude::*;

use super::*;

/// A message, its fragment boundaries, the pings after each fragment, the
/// wire's cut points and the limit (near the message's length, either side).
#[derive(Debug, Clone)]
struct Scenario {
    text: bool,
    message: Vec<u8>,
    /// Sorted cut points inside the message (fragment boundaries).
    fragment_cuts: Vec<usize>,
    /// For each fragment, the pings written after it.
    pings: Vec<Vec<Vec<u8>>>,
    /// Sorted cut points inside the wire bytes.
    wire_cuts: Vec<usize>,
    limit: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (any::<bool>(), ".{0,300}", proptest::collection::vec(any::<u8>(), 0..600))
        .prop_flat_map(|(text, string, bytes)| {
            let message = if text { string.into_bytes() } else { bytes };
            let len = message.len();
            (
                Just(text),
                Just(message),
                proptest::collection::btree_set(0..=len, 0..12),
                proptest::collection::vec(
                    proptest::collection::vec(
                        proptest::collection::vec(any::<u8>(), 0..=125),
                        0..3,
                    ),
                    13,
                ),
                proptest::collection::btree_set(0usize..4096, 0..40),
                len.saturating_sub(8)..=len + 8,
            )
        })
        .prop_map(|(text, message, fragment_cuts, pings, wire_cuts, limit)| Scenario {
            text,
            message,
            fragment_cuts: fragment_cuts.into_iter().collect(),
            pings,
            wire_cuts: wire_cuts.into_iter().collect(),
            limit,
        })
}

/// The wire bytes of a scenario and the ping payloads in the order written.
fn wire(scenario: &Scenario) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut bounds = vec![0];
    bounds.extend(&scenario.fragment_cuts);
    bounds.push(scenario.message.len());
    bounds.dedup();
    if bounds.len() == 1 {
        bounds.push(0);
    }
    let fragments: Vec<&[u8]> =
        bounds.windows(2).map(|pair| &scenario.message[pair[0]..pair[1]]).collect();
    let (mut wire, mut pings) = (Vec::new(), Vec::new());
    for (index, fragment) in fragments.iter().enumerate() {
        let first = match (index, scenario.text) {
            (0, true) => opcode::TEXT,
            (0, false) => opcode::BINARY,
            _ => opcode::CONTINUATION,
        };
        let fin = if index + 1 == fragments.len() { FIN } else { 0 };
        wire.extend(encode_frame(fin | first, fragment));
        for ping in scenario.pings.get(index).into_iter().flatten() {
            wire.extend(encode_frame(FIN | opcode::PING, ping));
            pings.push(ping.clone());
        }
    }
    (wire, pings)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_split_with_pings_reassembles_identically_within_the_limit(scenario in scenario()) {
        let (bytes, pings) = wire(&scenario);
        let mut codec = FrameCodec::new(scenario.limit);
        let mut assembler = MessageAssembler::new(scenario.limit);
        let mut src = BytesMut::new();
        let (mut delivered, mut pinged, mut refused) = (Vec::new(), Vec::new(), None);
        let mut start = 0;
        let cuts = scenario.wire_cuts.iter().copied().filter(|cut| *cut < bytes.len());
        'wire: for end in cuts.chain([bytes.len()]) {
            src.extend_from_slice(&bytes[start..end.max(start)]);
            start = end.max(start);
            loop {
                match codec.decode(&mut src) {
                    Ok(Some(Event::Data(frame))) => match assembler.push(frame) {
                        Ok(Some(message)) => delivered.push(message),
                        Ok(None) => {}
                        Err(AssembleError::TooLarge { size, limit }) => {
                            prop_assert!(size > limit);
                            refused = Some(format!("message of {size} over {limit}"));
                            break 'wire;
                        }
                        Err(other) => prop_assert!(false, "{other}"),
                    },
                    Ok(Some(Event::Ping(payload))) => pinged.push(payload.to_vec()),
                    Ok(Some(other)) => prop_assert!(false, "unexpected {other:?}"),
                    Ok(None) => {
                        // Drained: what is left is the start of one frame under the limit.
                        let bound = MAX_HEADER_LEN + scenario.limit.max(MAX_CONTROL_PAYLOAD);
                        prop_assert!(src.len() <= bound, "{} bytes buffered", src.len());
                        break;
                    }
                    Err(TransportError::FrameTooLarge { announced, limit }) => {
                        prop_assert!(announced > limit as u64);
                        refused = Some(format!("frame of {announced} over {limit}"));
                        break 'wire;
                    }
                    Err(other) => prop_assert!(false, "{other}"),
                }
            }
        }
        if scenario.message.len() > scenario.limit {
            prop_assert!(refused.is_some(), "a message over the limit was not refused");
            prop_assert!(delivered.is_empty());
        } else {
            prop_assert_eq!(refused, None, "a message within the limit was refused");
            prop_assert_eq!(pinged, pings);
            prop_assert_eq!(delivered.len(), 1);
            let kind = if scenario.text { DataKind::Text } else { DataKind::Binary };
            prop_assert_eq!(delivered[0].kind, kind);
            prop_assert_eq!(delivered[0].payload.as_ref(), scenario.message.as_slice());
        }
    }
}
