//! Codec benchmarks: POP3 body decoding and SMTP body encoding in bytes/s, each beside a plain
//! memcpy of the same buffer measured in the same run; POP3 status/CAPA and SMTP reply/EHLO
//! parsing in elements/s.
//!
//! `cargo bench -p mail-benches --bench codecs --profile release` (the runner, `benches/run.sh`,
//! does this and copies the figures into `benches/README.md`).
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mail_benches::corpus;
use mail_common::LineReader;
use pop3_proto::body::{BodyDecoder, Decoded};
use pop3_proto::{Capabilities as PopCapabilities, parse};
use smtp_submit::body::{BodyEncoder, Framing, LineEndingPolicy};
use smtp_submit::capabilities::Capabilities as SmtpCapabilities;
use smtp_submit::reply::ReplyReader;

/// Size of each corpus: a message with an attachment, not a cache-resident toy.
const BODY_SIZE: usize = 1 << 20;
/// The decoder is fed the way a TLS stream delivers: at most one 16 KiB record at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The adapter reads a streamed body 64 KiB at a time.
const ENCODE_CHUNK: usize = 64 * 1024;

fn corpora() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("text76", corpus::text_76(BODY_SIZE)),
        ("base64", corpus::base64_attachment(BODY_SIZE)),
        ("dotheavy", corpus::dot_heavy(BODY_SIZE)),
    ]
}

fn memcpy(out: &mut Vec<u8>, input: &[u8]) {
    out.clear();
    out.extend_from_slice(black_box(input));
    black_box(&out);
}

/// Decodes one whole `RETR` body; returns the unstuffed length.
fn decode(rx: &mut LineReader, wire: &[u8]) -> usize {
    let mut decoder = BodyDecoder::new(u64::MAX);
    let mut chunks = wire.chunks(READ_CHUNK);
    let mut total = 0;
    loop {
        match decoder.decode(rx).expect("no size limit") {
            Decoded::Data(data) => total += black_box(data).len(),
            Decoded::End => return total,
            Decoded::NeedMore => rx.extend(chunks.next().expect("terminator in the wire")),
        }
    }
}

fn pop3_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("pop3_decode");
    let mut out = Vec::with_capacity(2 * BODY_SIZE);
    let mut rx = LineReader::new(8192);
    for (name, body) in corpora() {
        let wire = corpus::pop3_wire(&body);
        assert_eq!(decode(&mut rx, &wire), body.len());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("memcpy/{name}"), |b| {
            b.iter(|| memcpy(&mut out, &wire));
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(&mut rx, &wire));
        });
    }
    group.finish();
}

fn encode(out: &mut Vec<u8>, input: &[u8]) {
    out.clear();
    let mut encoder = BodyEncoder::new(Framing::Data, LineEndingPolicy::Normalize);
    for chunk in input.chunks(ENCODE_CHUNK) {
        encoder.encode(chunk, out).expect("normalize never fails");
    }
    encoder.finish(out).expect("normalize never fails");
    black_box(&out);
}

fn smtp_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_encode");
    let mut out = Vec::with_capacity(2 * BODY_SIZE);
    let mut inputs = corpora();
    inputs.insert(
        1,
        ("text76-lf", corpus::lf_only(&corpus::text_76(BODY_SIZE))),
    );
    for (name, body) in inputs {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("memcpy/{name}"), |b| {
            b.iter(|| memcpy(&mut out, &body));
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| encode(&mut out, &body));
        });
    }
    group.finish();
}

/// Status lines as a fetch sees them: STAT, LIST/RETR answers, a refusal with a code.
const POP3_STATUS: &[&[u8]] = &[
    b"+OK 2000 3767679",
    b"+OK 1488 octets",
    b"+OK Logged in.",
    b"-ERR [AUTH] Authentication failed.",
    b"+OK",
    b"+OK 1326 octets",
    b"-ERR [SYS/TEMP] Internal error occurred.",
    b"+OK Logging out.",
];

/// Dovecot's CAPA answer (lines between `+OK` and `.`).
const DOVECOT_CAPA: &[&[u8]] = &[
    b"CAPA",
    b"TOP",
    b"UIDL",
    b"RESP-CODES",
    b"PIPELINING",
    b"AUTH-RESP-CODE",
    b"USER",
    b"SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256",
];

fn pop3_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("pop3_parse");
    group.throughput(Throughput::Elements(POP3_STATUS.len() as u64));
    group.bench_function("status_line+response", |b| {
        b.iter(|| {
            for line in POP3_STATUS {
                match parse::status_line(black_box(line)) {
                    Ok(parse::Status::Ok(text) | parse::Status::Err(text)) => {
                        black_box(parse::response(text));
                    }
                    other => {
                        black_box(other.is_ok());
                    }
                }
            }
        });
    });
    let list: Vec<Vec<u8>> = (1..=100_u32)
        .map(|n| format!("{n} {}", 900 + n * 7).into_bytes())
        .collect();
    group.throughput(Throughput::Elements(list.len() as u64));
    group.bench_function("list_entry", |b| {
        b.iter(|| {
            for line in &list {
                black_box(parse::scan_entry(black_box(line)).is_ok());
            }
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("capa_dovecot", |b| {
        b.iter(|| black_box(PopCapabilities::from_lines(DOVECOT_CAPA.iter().copied())));
    });
    group.finish();
}

/// One pipelined transaction's replies: MAIL, RCPT, BDAT LAST.
const SMTP_FLIGHT: &[u8] =
    b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 4dLbQn0SMBz9sWm\r\n";

/// Postfix's EHLO answer after STARTTLS.
const POSTFIX_EHLO: &[u8] = b"250-vm\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-ETRN\r\n\
250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

fn smtp_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_parse");
    let flights = 100;
    let wire = SMTP_FLIGHT.repeat(flights);
    let mut reader = ReplyReader::new(8192);
    group.throughput(Throughput::Elements(3 * flights as u64));
    group.bench_function("reply_reader", |b| {
        b.iter(|| {
            reader.extend(black_box(&wire));
            let mut n = 0;
            while let Some(reply) = reader.next_reply(100).expect("valid replies") {
                black_box(reply);
                n += 1;
            }
            assert_eq!(n, 3 * flights);
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("ehlo_postfix_read+capabilities", |b| {
        b.iter(|| {
            reader.extend(black_box(POSTFIX_EHLO));
            let reply = reader.next_reply(100).expect("valid").expect("complete");
            black_box(SmtpCapabilities::from_ehlo(&reply))
        });
    });
    reader.extend(POSTFIX_EHLO);
    let reply = reader.next_reply(100).expect("valid").expect("complete");
    assert!(SmtpCapabilities::from_ehlo(&reply).chunking());
    group.bench_function("ehlo_capabilities_only", |b| {
        b.iter(|| black_box(SmtpCapabilities::from_ehlo(black_box(&reply))));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = pop3_decode, smtp_encode, pop3_parse, smtp_parse
}
criterion_main!(benches);
