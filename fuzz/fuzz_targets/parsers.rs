//! Every line-level parser of both protocols on arbitrary input: no panic, and the reply
//! reader never returns more lines than its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pop3_proto::parse;
use smtp_submit::capabilities::parse_ehlo_line;
use smtp_submit::reply::{ReplyReader, parse_enhanced_status_code, parse_reply_line};

fuzz_target!(|data: &[u8]| {
    // POP3: one framed line, as the core hands it to the parsers.
    let _ = parse::status_line(data);
    let _ = parse::response(data);
    let _ = parse::apop_timestamp(data);
    let _ = parse::stat(data);
    let _ = parse::scan_entry(data);
    let _ = parse::uid_entry(data);
    let _ = parse::listing_line(data);
    let _ = parse::capability(data);
    let _ = parse::excerpt(data);

    // SMTP: single lines, then a stream of replies.
    let _ = parse_reply_line(data);
    let _ = parse_enhanced_status_code(data);
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = parse_ehlo_line(line);
        }
    }
    let mut reader = ReplyReader::new(256);
    reader.extend(data);
    for _ in 0..data.len() + 1 {
        match reader.next_reply(8) {
            Ok(Some(reply)) => assert!(reply.lines().len() <= 8, "reply line limit not enforced"),
            Ok(None) | Err(_) => break,
        }
    }
});
