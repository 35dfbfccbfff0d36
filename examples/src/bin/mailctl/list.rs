//! `mailctl list`: what is on the POP3 server, from `TOP n 0`, without downloading bodies.

use mail_account::preview::{MessagePreview, PreviewOptions, preview_account};

use crate::server::{Role, ServerArgs};
use crate::{Failure, Outcome};

/// Flags of `mailctl list`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Only the last (newest) N messages.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Print JSON (an object with `messages`: number, size, uid, date, from, subject).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let resolved = args.server.resolve(Role::Incoming)?;
    let secret = resolved
        .secret
        .ok_or_else(|| Failure::settings("POP3 needs a password"))?;
    let mut options = PreviewOptions::default();
    options.last = args.last;
    let messages = preview_account(&resolved.settings, &secret, &options).await?;
    if args.json {
        let json = serde_json::json!({ "messages": messages });
        println!("{json:#}");
    } else {
        print_table(&messages);
    }
    Ok(())
}

fn print_table(messages: &[MessagePreview]) {
    if messages.is_empty() {
        println!("no messages");
        return;
    }
    for message in messages {
        let date = message.fields.date.as_deref().map_or_else(
            || "-".repeat(16),
            |d| d.get(..16).unwrap_or(d).replace('T', " "),
        );
        let from = message
            .fields
            .from
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        let subject = match (&message.refused, &message.fields.subject) {
            (Some(why), _) => format!("(TOP refused: {why})"),
            (None, Some(subject)) => subject.clone(),
            (None, None) => "(no subject)".to_owned(),
        };
        println!(
            "{:>5} {:>8} {date}  {}  {}",
            message.number,
            human_size(message.size),
            printable(&from, 30),
            printable(&subject, 200).trim_end(),
        );
    }
}

/// `1234` -> `1234`, `56789` -> `55K`, `1234567` -> `1.2M`.
fn human_size(octets: u64) -> String {
    const K: u64 = 1024;
    match octets {
        n if n < 10 * K => n.to_string(),
        n if n < K * K => format!("{}K", n.div_ceil(K)),
        n => format!("{}.{}M", n / (K * K), n % (K * K) * 10 / (K * K)),
    }
}

/// The text with control characters (a hostile header could hold terminal escapes) shown as
/// U+FFFD, cut or padded to `width` terminal columns (CJK characters take two).
fn printable(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let mut out = String::new();
    let mut used = 0;
    let total: usize = text.chars().map(|c| c.width().unwrap_or(1)).sum();
    for c in text.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        let w = c.width().unwrap_or(1);
        // Leave a column for the ellipsis when the text does not fit.
        if used + w > width || (total > width && used + w >= width) {
            out.push('…');
            used += 1;
            break;
        }
        out.push(c);
        used += w;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

#[cfg(test)]
mod tests {
    use super::{human_size, printable};

    #[test]
    fn sizes_and_printable_text() {
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(56_789), "56K");
        assert_eq!(human_size(1_234_567), "1.1M");
        assert_eq!(printable("a\x1b[2Jb", 7), "a\u{fffd}[2Jb ");
        assert_eq!(printable("abcdef", 4), "abc…");
        assert_eq!(printable("山田 <a@b>", 12), "山田 <a@b>  ");
        assert_eq!(printable("日本語です", 6), "日本… ");
    }
}
