//! permessage-deflate negotiation (RFC 7692 section 7.1): the offer we send
//! in `Sec-WebSocket-Extensions`, and the server's answer parsed and held to
//! what was offered. Pure: no I/O, every rule unit-tested below.
//!
//! A server that answers with no extension runs the connection uncompressed;
//! an answer naming an extension or a parameter we did not offer, a
//! parameter twice, a value out of range, or a second configuration, fails
//! the handshake.

use feedvisor_transport_api::DeflateParams;

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// What both ends agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The window the server compresses with (8 to 15): our inflater's.
    pub server_max_window_bits: u8,
    /// The window we may compress with (8 to 15).
    pub client_max_window_bits: u8,
    /// The server starts each message afresh: our inflater may too.
    pub server_no_context_takeover: bool,
    /// We start each message afresh.
    pub client_no_context_takeover: bool,
}

/// The `Sec-WebSocket-Extensions` value offering `params`.
///
/// `client_max_window_bits` is always offered (without a value when the feed
/// sets none), telling the server it may ask us for a smaller window.
pub(crate) fn offer(params: &DeflateParams) -> String {
    let mut offer = String::from(NAME);
    match params.client_max_window_bits {
        Some(bits) => offer.push_str(&format!("; client_max_window_bits={bits}")),
        None => offer.push_str("; client_max_window_bits"),
    }
    if let Some(bits) = params.server_max_window_bits {
        offer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if params.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if params.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    offer
}

/// The server's answer, held to what we offered.
///
/// `answers` are the values of every `Sec-WebSocket-Extensions` response
/// header; `offered` is `None` when we offered nothing. `Ok(None)`: the
/// server accepted no extension. The error says what is wrong, quoting at
/// most a short piece of the answer.
pub(crate) fn accept(
    offered: Option<&DeflateParams>,
    answers: &[&str],
) -> Result<Option<Negotiated>, String> {
    let mut elements = Vec::new();
    for answer in answers {
        elements.extend(split_outside_quotes(answer, ',').into_iter().filter(|e| !e.is_empty()));
    }
    let Some(first) = elements.first() else {
        return Ok(None);
    };
    let Some(offered) = offered else {
        return Err(format!("server answered extension {} which was not offered", shown(first)));
    };
    if elements.len() > 1 {
        return Err(
            "server answered more than one extension; only permessage-deflate was offered, once"
                .to_owned(),
        );
    }
    let mut parts = split_outside_quotes(first, ';').into_iter();
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case(NAME) {
        return Err(format!("server answered extension {} which was not offered", shown(&name)));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut agreed = Negotiated {
        server_max_window_bits: 15,
        client_max_window_bits: offered.client_max_window_bits.unwrap_or(15),
        server_no_context_takeover: false,
        client_no_context_takeover: offered.client_no_context_takeover,
    };
    let mut server_bits_answered = false;
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key.trim().to_ascii_lowercase(), Some(unquote(value.trim())?)),
            None => (part.trim().to_ascii_lowercase(), None),
        };
        if seen.contains(&key) {
            return Err(format!("server answered permessage-deflate parameter {key} twice"));
        }
        seen.push(key.clone());
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            ("server_max_window_bits", Some(value)) => {
                let bits = window_bits(&key, &value)?;
                if offered.server_max_window_bits.is_some_and(|asked| bits > asked) {
                    return Err(format!(
                        "server answered server_max_window_bits={bits}, more than the {} offered",
                        offered.server_max_window_bits.unwrap_or(15)
                    ));
                }
                agreed.server_max_window_bits = bits;
                server_bits_answered = true;
            }
            ("client_max_window_bits", Some(value)) => {
                let bits = window_bits(&key, &value)?;
                if offered.client_max_window_bits.is_some_and(|asked| bits > asked) {
                    return Err(format!(
                        "server answered client_max_window_bits={bits}, more than the {} offered",
                        offered.client_max_window_bits.unwrap_or(15)
                    ));
                }
                agreed.client_max_window_bits = bits;
            }
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                return Err(format!("server answered {key} with a value; it takes none"))
            }
            ("server_max_window_bits" | "client_max_window_bits", None) => {
                return Err(format!("server answered {key} without a value"))
            }
            _ => {
                return Err(format!(
                    "server answered permessage-deflate parameter {} which was not offered",
                    shown(&key)
                ))
            }
        }
    }
    if offered.server_max_window_bits.is_some() && !server_bits_answered {
        return Err(
            "server accepted permessage-deflate without the server_max_window_bits offered"
                .to_owned(),
        );
    }
    if offered.server_no_context_takeover && !agreed.server_no_context_takeover {
        return Err(
            "server accepted permessage-deflate without the server_no_context_takeover offered"
                .to_owned(),
        );
    }
    Ok(Some(agreed))
}

/// A window size: a decimal 8 to 15 without leading zeros.
fn window_bits(key: &str, value: &str) -> Result<u8, String> {
    let valid = !value.starts_with('0') && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if valid => Ok(bits),
        _ => {
            Err(format!("server answered {key}={}: not a whole number from 8 to 15", shown(value)))
        }
    }
}

/// A parameter value: a token, or a quoted string (whose content must then be a token).
fn unquote(value: &str) -> Result<String, String> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated quoted value {}", shown(value)))?
            .replace('\\', ""),
        None => value.to_owned(),
    };
    if inner.is_empty() {
        return Err("empty parameter value".to_owned());
    }
    Ok(inner)
}

/// Splits at `separator` outside double quotes, trimming each piece.
fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    pieces.push(current.trim().to_owned());
    pieces
}

/// At most 40 characters of what the server sent, quoted, for an error.
fn shown(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeflateParams {
        DeflateParams::default()
    }

    fn agreed(server: u8, client: u8, server_reset: bool, client_reset: bool) -> Negotiated {
        Negotiated {
            server_max_window_bits: server,
            client_max_window_bits: client,
            server_no_context_takeover: server_reset,
            client_no_context_takeover: client_reset,
        }
    }

    #[test]
    fn the_offer_names_every_parameter_set() {
        assert_eq!(offer(&params()), "permessage-deflate; client_max_window_bits");
        let all = DeflateParams {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(9),
            client_no_context_takeover: true,
            server_no_context_takeover: true,
        };
        assert_eq!(
            offer(&all),
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=9; \
             client_no_context_takeover; server_no_context_takeover"
        );
    }

    #[test]
    fn no_answer_runs_uncompressed() {
        assert_eq!(accept(Some(&params()), &[]), Ok(None));
        assert_eq!(accept(Some(&params()), &[" "]), Ok(None));
        assert_eq!(accept(None, &[]), Ok(None));
    }

    #[test]
    fn a_plain_acceptance_uses_full_windows_and_context_takeover() {
        let answer = accept(Some(&params()), &["permessage-deflate"]);
        assert_eq!(answer, Ok(Some(agreed(15, 15, false, false))));
    }

    #[test]
    fn names_and_parameters_are_case_insensitive_and_values_may_be_quoted() {
        let answer = accept(
            Some(&params()),
            &["Permessage-Deflate; Server_Max_Window_Bits=\"10\"; client_max_window_bits=9"],
        );
        assert_eq!(answer, Ok(Some(agreed(10, 9, false, false))));
    }

    #[test]
    fn the_server_may_add_context_takeover_and_its_own_window_unasked() {
        let answer = accept(
            Some(&params()),
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"],
        );
        assert_eq!(answer, Ok(Some(agreed(12, 15, true, true))));
    }

    #[test]
    fn a_window_we_limited_stays_limited_when_the_server_says_nothing() {
        let ours = DeflateParams { client_max_window_bits: Some(11), ..params() };
        assert_eq!(
            accept(Some(&ours), &["permessage-deflate"]),
            Ok(Some(agreed(15, 11, false, false)))
        );
    }

    #[test]
    fn windows_larger_than_offered_fail() {
        let ours = DeflateParams {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(10),
            ..params()
        };
        let client = accept(
            Some(&ours),
            &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"],
        );
        assert!(client.expect_err("too large").contains("client_max_window_bits=11"));
        let server = accept(Some(&ours), &["permessage-deflate; server_max_window_bits=11"]);
        assert!(server.expect_err("too large").contains("server_max_window_bits=11"));
    }

    #[test]
    fn offered_server_parameters_must_be_answered() {
        let window = DeflateParams { server_max_window_bits: Some(10), ..params() };
        let error = accept(Some(&window), &["permessage-deflate"]).expect_err("missing");
        assert!(error.contains("server_max_window_bits"), "{error}");
        let reset = DeflateParams { server_no_context_takeover: true, ..params() };
        let error = accept(Some(&reset), &["permessage-deflate"]).expect_err("missing");
        assert!(error.contains("server_no_context_takeover"), "{error}");
        assert_eq!(
            accept(Some(&reset), &["permessage-deflate; server_no_context_takeover"]),
            Ok(Some(agreed(15, 15, true, false)))
        );
    }

    #[test]
    fn invalid_values_fail() {
        for value in ["7", "16", "010", "x", "", "1a", "\"9", "-9", "999"] {
            let answer = format!("permessage-deflate; server_max_window_bits={value}");
            assert!(accept(Some(&params()), &[&answer]).is_err(), "{value:?} accepted");
        }
        assert!(accept(Some(&params()), &["permessage-deflate; server_max_window_bits"]).is_err());
        assert!(
            accept(Some(&params()), &["permessage-deflate; server_no_context_takeover=1"]).is_err()
        );
        for bits in 8..=15 {
            let answer = format!(
                "permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}"
            );
            assert_eq!(
                accept(Some(&params()), &[&answer]),
                Ok(Some(agreed(bits, bits, false, false)))
            );
        }
    }

    #[test]
    fn what_was_not_offered_fails() {
        let unknown = accept(Some(&params()), &["permessage-deflate; mystery_param"]);
        assert!(unknown.expect_err("unknown").contains("mystery_param"));
        let other = accept(Some(&params()), &["x-webkit-deflate-frame"]);
        assert!(other.expect_err("other").contains("x-webkit-deflate-frame"));
        let unoffered = accept(None, &["permessage-deflate"]);
        assert!(unoffered.expect_err("nothing offered").contains("not offered"));
        let not_offered_client = accept(
            Some(&DeflateParams { client_max_window_bits: Some(9), ..params() }),
            &["permessage-deflate; client_max_window_bits=9"],
        );
        assert!(not_offered_client.is_ok());
    }

    #[test]
    fn a_parameter_twice_or_two_configurations_fail() {
        let twice = accept(
            Some(&params()),
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
        );
        assert!(twice.expect_err("twice").contains("twice"));
        let two = accept(Some(&params()), &["permessage-deflate", "permessage-deflate"]);
        assert!(two.expect_err("two").contains("more than one"));
        let in_one_header = accept(Some(&params()), &["permessage-deflate, permessage-deflate"]);
        assert!(in_one_header.is_err());
    }

    #[test]
    fn errors_quote_only_a_short_piece_of_the_answer() {
        let long = format!("permessage-deflate; {}", "p".repeat(10_000));
        let error = accept(Some(&params()), &[&long]).expect_err("unknown");
        assert!(error.len() < 200, "{error}");
    }
}
