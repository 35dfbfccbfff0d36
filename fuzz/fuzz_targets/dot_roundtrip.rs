//! Differential: any body through smtp-submit's DATA encoder, split into arbitrary chunks, must
//! end at exactly one end-of-data line, and pop3-proto's decoder must give back the body with
//! CRLF line endings. A failure here is a smuggling bug (RFC 5321 §4.5.2, the SMTP smuggling
//! family of 2023) or a decoder that loses bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_common::LineReader;
use pop3_proto::body::{BodyDecoder, Decoded};
use smtp_submit::body::{BodyEncoder, Framing};
use smtp_submit::LineEndingPolicy;

/// What the server stores: bare CR and bare LF become CRLF, and a final CRLF is added.
fn normalized(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, body)) = data.split_first() else {
        return;
    };
    let mut encoder = BodyEncoder::new(Framing::Data, LineEndingPolicy::Normalize);
    let mut wire = Vec::new();
    let step = usize::from(split_seed % 17) + 1;
    for chunk in body.chunks(step) {
        encoder.encode(chunk, &mut wire).expect("normalize never refuses");
    }
    encoder.finish(&mut wire).expect("normalize never refuses");

    // The wire is preceded by the CRLF that ended the DATA command.
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(&wire);
    let first_end = framed
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .expect("an end-of-data line");
    assert_eq!(first_end + 5, framed.len(), "early end-of-data in {wire:?}");
    for (i, &byte) in wire.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR on the wire at {i}"),
            b'\n' => assert!(i > 0 && wire[i - 1] == b'\r', "bare LF on the wire at {i}"),
            _ => {}
        }
    }

    // Decode as a POP3 multi-line body, fed in pieces too.
    let mut reader = LineReader::new(1 << 20);
    let mut decoder = BodyDecoder::new(u64::MAX);
    let mut decoded = Vec::new();
    let mut ended = false;
    for piece in wire.chunks(step * 3 + 1) {
        reader.extend(piece);
        loop {
            match decoder.decode(&mut reader).expect("no size limit") {
                Decoded::Data(bytes) => decoded.extend_from_slice(&bytes),
                Decoded::End => {
                    ended = true;
                    break;
                }
                Decoded::NeedMore => break,
            }
        }
    }
    assert!(ended, "the decoder never saw the end of {wire:?}");
    assert_eq!(decoded, normalized(body));
});
