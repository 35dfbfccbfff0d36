//! Properties of the DATA/BDAT body encoder, checked against an independent reference decoder
//! (what a server does with the bytes between `DATA` and the end of data).

use proptest::prelude::*;
use smtp_submit::body::{BareLineEnding, BodyEncoder, Framing, LineEndingPolicy, normalized_len};

/// Reference normalisation, written plainly: CRLF stays, bare CR or LF become CRLF, and a
/// non-empty body gets a final CRLF if it lacks one.
fn reference_normalize(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first bare CR or LF, if any.
fn first_bare(input: &[u8]) -> Option<(u8, usize)> {
    (0..input.len()).find_map(|i| match input[i] {
        b'\r' if input.get(i + 1) != Some(&b'\n') => Some((b'\r', i)),
        b'\n' if i == 0 || input[i - 1] != b'\r' => Some((b'\n', i)),
        _ => None,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a server makes of a DATA stream: the data ends at the first CRLF.CRLF (the CRLF that
/// ended the DATA command counts as the first CRLF), then every line loses one leading dot.
/// Returns the content and whatever followed the terminator.
fn reference_decode(stream: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(stream);
    let end = find(&framed, b"\r\n.\r\n").expect("no end-of-data sequence at all");
    let content = &framed[2..end + 2];
    let after = framed[end + 5..].to_vec();
    let mut decoded = Vec::new();
    for line in content.split_inclusive(|&b| b == b'\n') {
        decoded.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    (decoded, after)
}

fn has_bare_line_ending(bytes: &[u8]) -> bool {
    first_bare(bytes).is_some()
}

/// Cuts `input` at the given positions (any order, any values).
fn chunks<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces
}

fn encode(
    framing: Framing,
    policy: LineEndingPolicy,
    pieces: &[&[u8]],
) -> Result<Vec<u8>, BareLineEnding> {
    let mut encoder = BodyEncoder::new(framing, policy);
    let mut out = Vec::new();
    for piece in pieces {
        encoder.encode(piece, &mut out)?;
    }
    encoder.finish(&mut out)?;
    Ok(out)
}

/// Bodies rich in the bytes that matter: CR, LF and dots, plus ordinary text and 8-bit bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            4 => Just(b'.'),
            3 => Just(b'a'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the body and however it is chunked, the server decodes exactly the normalised
    /// body, the end-of-data sequence occurs once, at the very end, and no bare CR or LF leaves.
    #[test]
    fn data_stream_decodes_to_the_normalized_body(
        input in body(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = chunks(&input, &cuts);
        let stream = encode(Framing::Data, LineEndingPolicy::Normalize, &pieces).unwrap();
        let (decoded, after) = reference_decode(&stream);
        prop_assert!(after.is_empty(), "bytes after the first end-of-data: {:?}", after);
        prop_assert_eq!(&decoded, &reference_normalize(&input));
        prop_assert!(!has_bare_line_ending(&stream));
        // Same bytes whatever the chunking.
        prop_assert_eq!(&stream, &encode(Framing::Data, LineEndingPolicy::Normalize, &[&input]).unwrap());
    }

    /// BDAT carries the normalised body unstuffed: the same message as DATA, and exactly
    /// `normalized_len` bytes.
    #[test]
    fn bdat_payload_is_the_normalized_body(
        input in body(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = chunks(&input, &cuts);
        let payload = encode(Framing::Bdat, LineEndingPolicy::Normalize, &pieces).unwrap();
        prop_assert_eq!(&payload, &reference_normalize(&input));
        prop_assert_eq!(payload.len() as u64, normalized_len(&input));
        let data = encode(Framing::Data, LineEndingPolicy::Normalize, &pieces).unwrap();
        prop_assert_eq!(reference_decode(&data).0, payload);
    }

    /// The Reject policy fails exactly when the body has a bare CR or LF, at its position, and
    /// otherwise produces the same bytes as Normalize.
    #[test]
    fn reject_fails_exactly_on_bare_line_endings(
        input in body(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        framing in prop_oneof![Just(Framing::Data), Just(Framing::Bdat)],
    ) {
        let pieces = chunks(&input, &cuts);
        let result = encode(framing, LineEndingPolicy::Reject, &pieces);
        match first_bare(&input) {
            Some((byte, position)) => {
                prop_assert_eq!(result, Err(BareLineEnding { byte, position: position as u64 }));
            }
            None => {
                prop_assert_eq!(result.unwrap(), encode(framing, LineEndingPolicy::Normalize, &pieces).unwrap());
            }
        }
    }
}

/// Line-structured bodies: mostly short CRLF lines starting with dots (the word-at-a-time path
/// of the encoder), with long lines and bare CR or LF among them (where it hands back).
fn dotted_lines() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => Just(b".".to_vec()),
        2 => Just(b"..".to_vec()),
        2 => Just(b".x".to_vec()),
        1 => Just(b".leading dot line".to_vec()),
        2 => Just(Vec::new()),
        1 => Just(b"x".repeat(45)),
        2 => proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..12),
    ];
    let ending = prop_oneof![12 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..]), 1 => Just(&b""[..])];
    joined(line, ending, 0..80)
}

/// Up to `count` lines from `line`, each followed by an ending from `ending`, as one body.
fn joined(
    line: impl Strategy<Value = Vec<u8>>,
    ending: impl Strategy<Value = &'static [u8]>,
    count: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((line, ending), count).prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(line, ending)| [line, ending.to_vec()])
            .flatten()
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The same properties for dot-dense line-structured bodies, chunked anywhere (inside a
    /// CRLF, between a line end and its dot, inside an eight-byte word).
    #[test]
    fn dot_dense_lines_encode_like_any_body(
        input in dotted_lines(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = chunks(&input, &cuts);
        let stream = encode(Framing::Data, LineEndingPolicy::Normalize, &pieces).unwrap();
        let (decoded, after) = reference_decode(&stream);
        prop_assert!(after.is_empty(), "bytes after the first end-of-data: {:?}", after);
        prop_assert_eq!(&decoded, &reference_normalize(&input));
        prop_assert!(!has_bare_line_ending(&stream));
        prop_assert_eq!(&stream, &encode(Framing::Data, LineEndingPolicy::Normalize, &[&input]).unwrap());
        let payload = encode(Framing::Bdat, LineEndingPolicy::Normalize, &pieces).unwrap();
        prop_assert_eq!(&payload, &reference_normalize(&input));
        let rejected = encode(Framing::Data, LineEndingPolicy::Reject, &pieces);
        if let Some((byte, position)) = first_bare(&input) {
            prop_assert_eq!(rejected, Err(BareLineEnding { byte, position: position as u64 }));
        } else {
            prop_assert_eq!(rejected.unwrap(), stream);
        }
    }
}

/// The DATA stream written plainly, a byte at a time: the normalised body with a second dot
/// at every line start that has one, then the end-of-data line.
fn reference_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for &byte in &reference_normalize(input) {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Long dot-dense bodies: several of the encoder's 512-byte blocks of short dotted CRLF lines,
/// with now and then a long line, a bare CR or LF, or a line without a dot.
fn long_dotted_lines() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        6 => Just(b".".to_vec()),
        3 => Just(b"..".to_vec()),
        3 => Just(b".a".to_vec()),
        2 => Just(b".leading dot line".to_vec()),
        1 => Just(b"no dot".to_vec()),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'x')], 30..80),
    ];
    let ending = prop_oneof![40 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..]), 1 => Just(&b""[..])];
    joined(line, ending, 0..600)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Byte for byte the reference encoder's stream, however the body is chunked.
    #[test]
    fn long_dot_dense_bodies_match_the_reference_encoder(
        input in long_dotted_lines(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let expected = reference_encode(&input);
        let pieces = chunks(&input, &cuts);
        prop_assert_eq!(&encode(Framing::Data, LineEndingPolicy::Normalize, &pieces).unwrap(), &expected);
        prop_assert_eq!(&encode(Framing::Data, LineEndingPolicy::Normalize, &[&input]).unwrap(), &expected);
    }

    /// The same for the short bodies rich in CR, LF and dots.
    #[test]
    fn bodies_match_the_reference_encoder(
        input in body(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = chunks(&input, &cuts);
        prop_assert_eq!(encode(Framing::Data, LineEndingPolicy::Normalize, &pieces).unwrap(), reference_encode(&input));
    }
}

#[test]
fn reference_encoder_stuffs_and_terminates() {
    assert_eq!(reference_encode(b""), b".\r\n");
    assert_eq!(reference_encode(b".a\n.."), b"..a\r\n...\r\n.\r\n");
}

#[test]
fn smtp_smuggling_family() {
    for payload in [
        &b"a\n.\nMAIL FROM:<x>\n"[..],
        b"a\r\n.\nRSET\r\n",
        b"a\n.\r\nRSET\r\n",
        b"a\r.\rRSET\r",
        b"a\r.\r\nRSET",
        b".\r\nRSET\r\nNOOP\r\n",
        b"\r\n.\r\n",
    ] {
        let stream = encode(Framing::Data, LineEndingPolicy::Normalize, &[payload]).unwrap();
        assert_eq!(
            find(&stream, b"\r\n.\r\n"),
            Some(stream.len() - 5),
            "{payload:?}"
        );
        let (decoded, after) = reference_decode(&stream);
        assert!(after.is_empty());
        assert_eq!(decoded, reference_normalize(payload));
        // Every byte-wise chunking gives the same stream.
        let bytes: Vec<&[u8]> = payload.chunks(1).collect();
        assert_eq!(
            encode(Framing::Data, LineEndingPolicy::Normalize, &bytes).unwrap(),
            stream
        );
    }
}

#[test]
fn reference_decoder_catches_an_unstuffed_dot() {
    // The checks above would notice an encoder that forgot to stuff: the decoder stops early.
    let (decoded, after) = reference_decode(b"a\r\n.\r\nRSET\r\n.\r\n");
    assert_eq!(decoded, b"a\r\n");
    assert_eq!(after, b"RSET\r\n.\r\n");
}
