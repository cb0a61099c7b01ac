//! The cases, family by family, modelled on the Autobahn TestSuite's client
//! cases (framing, pings and pongs, reserved bits, opcodes, fragmentation,
//! UTF-8, close handling, limits) plus the handshake faults of RFC 6455
//! section 4.1. Each case ends the same way unless it fails first: the
//! upstream sends a close 1000 and waits for the echo.

use feedvisor_test_support::websocket::{close_payload, encode_frame, frame_header, opcode, FIN};

use super::script::{Case, Handshake};

/// Every case, in the order of the table.
pub(super) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    framing(&mut cases);
    pings(&mut cases);
    protocol_violations(&mut cases);
    fragmentation(&mut cases);
    utf8(&mut cases);
    close(&mut cases);
    handshake(&mut cases);
    limits(&mut cases);
    cases
}

/// A deterministic payload of `len` bytes: printable ASCII, so that it is
/// also valid UTF-8 for text frames, and not all one byte.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b' ' + (i * 7 % 95) as u8).collect()
}

/// The upstream's normal end of a case: close 1000, wait for the echo.
fn normal_end(case: Case) -> Case {
    case.close(&close_payload(1000, "")).read()
}

/// Text and binary of 0, 125, 126, 65535 and 65536 bytes, written whole,
/// byte by byte and in 997-byte pieces.
fn framing(cases: &mut Vec<Case>) {
    for (kind, code) in [("text", opcode::TEXT), ("binary", opcode::BINARY)] {
        for len in [0usize, 125, 126, 65535, 65536] {
            for (how, piece) in
                [("whole", usize::MAX), ("1-byte-pieces", 1), ("997-byte-pieces", 997)]
            {
                let body = payload(len);
                let case = Case::new(format!("framing/{kind}-{len}-{how}"))
                    .write_in(encode_frame(FIN | code, &body), piece)
                    .carries(code == opcode::TEXT, &body);
                cases.push(normal_end(case));
            }
        }
    }
}

/// Pings answered with their payload, unsolicited pongs ignored, control
/// frames that break the rules failing the connection.
fn pings(cases: &mut Vec<Case>) {
    cases.push(normal_end(Case::new("pings/empty").ping(b"").read()));
    cases.push(normal_end(Case::new("pings/125-bytes").ping(&payload(125)).read()));
    cases.push(normal_end(Case::new("pings/binary-125-bytes").ping(&[0xFF; 125]).read()));
    let mut ten = Case::new("pings/ten-back-to-back");
    for n in 0..10u8 {
        ten = ten.ping(format!("ping {n}").as_bytes());
    }
    for _ in 0..10 {
        ten = ten.read();
    }
    cases.push(normal_end(ten));
    let unsolicited = Case::new("pings/unsolicited-pong-ignored")
        .write(encode_frame(FIN | opcode::PONG, b"unsolicited"))
        .write(encode_frame(FIN | opcode::TEXT, b"after the pong"))
        .carries(true, b"after the pong");
    cases.push(normal_end(unsolicited));
    let mut oversized = frame_header(FIN | opcode::PING, 126);
    oversized.extend(payload(126));
    cases.push(Case::new("pings/126-bytes").write(oversized));
    cases.push(Case::new("pings/fragmented").write(encode_frame(opcode::PING, b"first half")));
}

/// Reserved bits, reserved opcodes, a masked server frame, a continuation
/// with nothing to continue, a new message inside a fragmented one.
fn protocol_violations(cases: &mut Vec<Case>) {
    for (bit, mask) in [("rsv1", 0x40u8), ("rsv2", 0x20), ("rsv3", 0x10), ("rsv1-rsv2-rsv3", 0x70)]
    {
        let case = Case::new(format!("reserved/{bit}-on-text"))
            .write(encode_frame(FIN | mask | opcode::TEXT, b"reserved"));
        cases.push(case);
    }
    cases.push(
        Case::new("reserved/rsv2-on-ping").write(encode_frame(FIN | 0x20 | opcode::PING, b"p")),
    );
    for code in (3u8..=7).chain(11..=15) {
        let case = Case::new(format!("opcodes/reserved-{code}"))
            .write(encode_frame(FIN | code, b"reserved opcode"));
        cases.push(case);
    }
    let mut masked = vec![FIN | opcode::TEXT, 0x80 | 5, 1, 2, 3, 4];
    masked.extend(b"hello".iter().enumerate().map(|(i, byte)| byte ^ [1u8, 2, 3, 4][i % 4]));
    cases.push(Case::new("framing/masked-server-frame").write(masked));
    cases.push(
        Case::new("fragmentation/continuation-without-start")
            .write(encode_frame(FIN | opcode::CONTINUATION, b"orphan")),
    );
    cases.push(
        Case::new("fragmentation/text-inside-fragmented-text")
            .write(encode_frame(opcode::TEXT, b"first "))
            .write(encode_frame(FIN | opcode::TEXT, b"intruder")),
    );
    cases.push(
        Case::new("fragmentation/binary-inside-fragmented-binary")
            .write(encode_frame(opcode::BINARY, b"first "))
            .write(encode_frame(FIN | opcode::BINARY, b"intruder")),
    );
}

/// A message in `count` fragments with a ping after each fragment but the
/// last, each ping awaited (so answered before the message completes).
fn fragmented(name: String, text: bool, count: usize) -> Case {
    let body = payload(count * 10);
    let mut case = Case::new(name).carries(text, &body);
    for (index, fragment) in body.chunks(10).enumerate() {
        let first = if index == 0 {
            if text {
                opcode::TEXT
            } else {
                opcode::BINARY
            }
        } else {
            opcode::CONTINUATION
        };
        let last = index + 1 == count;
        case = case.write(encode_frame(if last { FIN | first } else { first }, fragment));
        if !last {
            case = case.ping(format!("between {index}").as_bytes()).read();
        }
    }
    normal_end(case)
}

fn fragmentation(cases: &mut Vec<Case>) {
    for count in [2usize, 3, 16, 64] {
        cases.push(fragmented(
            format!("fragmentation/text-{count}-fragments-pings-between"),
            true,
            count,
        ));
    }
    cases.push(fragmented("fragmentation/binary-64-fragments-pings-between".to_owned(), false, 64));
    // Empty fragments are fragments too.
    let empty = Case::new("fragmentation/empty-fragments")
        .write(encode_frame(opcode::TEXT, b""))
        .write(encode_frame(opcode::CONTINUATION, b"middle"))
        .write(encode_frame(FIN | opcode::CONTINUATION, b""))
        .carries(true, b"middle");
    cases.push(normal_end(empty));
    // A fragmented message written one byte at a time, with a ping inside.
    let mut wire = encode_frame(opcode::TEXT, b"split ");
    wire.extend(encode_frame(FIN | opcode::PING, b"inside"));
    wire.extend(encode_frame(FIN | opcode::CONTINUATION, b"message"));
    let mut sliced = Case::new("fragmentation/two-fragments-and-a-ping-in-1-byte-pieces")
        .write_in(wire, 1)
        .read();
    sliced.pings.push(b"inside".to_vec());
    cases.push(normal_end(sliced.carries(true, b"split message")));
}

/// A text message made of `fragments`, the last one final.
fn text_fragments(name: &str, fragments: &[&[u8]]) -> Case {
    let mut case = Case::new(name);
    for (index, fragment) in fragments.iter().enumerate() {
        let first = if index == 0 { opcode::TEXT } else { opcode::CONTINUATION };
        let fin = if index + 1 == fragments.len() { FIN } else { 0 };
        case = case.write(encode_frame(fin | first, fragment));
    }
    case
}

fn utf8(cases: &mut Vec<Case>) {
    let text = "κόσμε 𝄞 € \u{10FFFF} \u{FEFF}".as_bytes().to_vec();
    let bytewise: Vec<&[u8]> = text.chunks(1).collect();
    cases.push(normal_end(
        text_fragments("utf8/valid-split-at-every-byte", &bytewise).carries(true, &text),
    ));
    let whole = Case::new("utf8/valid-whole").write(encode_frame(FIN | opcode::TEXT, &text));
    cases.push(normal_end(whole.carries(true, &text)));
    // The second of three fragments is invalid: the client must fail before
    // the third is written (the upstream waits for its close first).
    let middle = Case::new("utf8/invalid-in-middle-fragment")
        .write(encode_frame(opcode::TEXT, "κόσμε".as_bytes()))
        .write(encode_frame(opcode::CONTINUATION, b"\xCE\xBA\xFF"))
        .read()
        .write(encode_frame(FIN | opcode::CONTINUATION, b"end"));
    cases.push(middle);
    // A code point over U+10FFFF whose bytes straddle two fragments.
    let straddling = Case::new("utf8/invalid-across-fragments")
        .write(encode_frame(opcode::TEXT, b"ok \xF4"))
        .write(encode_frame(opcode::CONTINUATION, b"\x90\x80\x80"))
        .read()
        .write(encode_frame(FIN | opcode::CONTINUATION, b"end"));
    cases.push(straddling);
    cases.push(text_fragments("utf8/truncated-at-the-end", &[b"ends in ", b"\xE2\x82"]));
    for (name, bytes) in [
        ("surrogate", &b"\xED\xA0\x80"[..]),
        ("overlong", b"\xC0\xAF"),
        ("lone-continuation", b"\x80"),
        ("0xfe", b"\xFE"),
    ] {
        cases.push(
            Case::new(format!("utf8/invalid-{name}"))
                .write(encode_frame(FIN | opcode::TEXT, bytes)),
        );
    }
}

fn close(cases: &mut Vec<Case>) {
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        cases.push(Case::new(format!("close/code-{code}")).close(&close_payload(code, "")).read());
    }
    cases.push(Case::new("close/empty-payload").close(b"").read());
    cases.push(Case::new("close/1-byte-payload").close(&[0x03]));
    cases.push(
        Case::new("close/123-byte-reason").close(&close_payload(1000, &"r".repeat(123))).read(),
    );
    cases.push(Case::new("close/invalid-utf8-reason").close(&[0x03, 0xE8, b'b', 0xFF, b'd']));
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
        cases.push(Case::new(format!("close/invalid-code-{code}")).close(&close_payload(code, "")));
    }
    // Data after the close is not delivered.
    let after = Case::new("close/text-after-close")
        .close(&close_payload(1000, ""))
        .write(encode_frame(FIN | opcode::TEXT, b"too late"))
        .read();
    cases.push(after);
}

/// Handshake answers a client must refuse (RFC 6455 section 4.1).
fn handshake(cases: &mut Vec<Case>) {
    let answer =
        |lines: &str| Handshake::Answer(format!("HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n"));
    let good = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";
    cases.push(Case::new("handshake/wrong-accept").handshake(answer(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: dGhpcyBpcyBub3QgaXQ=\r\n",
    )));
    cases.push(
        Case::new("handshake/missing-upgrade")
            .handshake(answer("Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n")),
    );
    cases.push(
        Case::new("handshake/subprotocol-not-offered")
            .feed_options(r#"subprotocols = ["feed.v1"]"#)
            .handshake(answer(&format!("{good}Sec-WebSocket-Protocol: other.v1\r\n"))),
    );
    cases.push(
        Case::new("handshake/subprotocol-when-none-offered")
            .handshake(answer(&format!("{good}Sec-WebSocket-Protocol: other.v1\r\n"))),
    );
    cases.push(
        Case::new("handshake/extension-not-offered").handshake(answer(&format!(
            "{good}Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
        ))),
    );
    let huge = format!("{good}X-Padding: {}\r\n", "a".repeat(1024 * 1024));
    cases.push(Case::new("handshake/1-mib-header").handshake(answer(&huge)));
    cases.push(
        Case::new("handshake/never-ends")
            .feed_options(r#"handshake_timeout = "500ms""#)
            .handshake(Handshake::NeverEnds),
    );
    cases.push(
        Case::new("handshake/200-instead-of-101").handshake(Handshake::Answer(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
        )),
    );
}

/// Frames announcing more than any limit: refused from the header, before
/// any payload is sent (the upstream sends none and waits for the close).
fn limits(cases: &mut Vec<Case>) {
    for (name, len) in [("256-mib", 256u64 << 20), ("2-pow-63-minus-1", (1u64 << 63) - 1)] {
        cases.push(
            Case::new(format!("limits/header-announcing-{name}"))
                .write(frame_header(FIN | opcode::BINARY, len))
                .read(),
        );
    }
    cases.push(
        Case::new("limits/length-with-top-bit-set")
            .write(frame_header(FIN | opcode::BINARY, 1u64 << 63))
            .read(),
    );
    cases.push(
        Case::new("limits/fragments-adding-up-past-the-limit")
            .write(encode_frame(opcode::BINARY, &payload(700 * 1024)))
            .write(encode_frame(FIN | opcode::CONTINUATION, &payload(700 * 1024))),
    );
}
