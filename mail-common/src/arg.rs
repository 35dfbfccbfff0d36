//! The rule that keeps caller data from becoming protocol commands: no CR, LF or NUL inside a
//! command argument. Both protocols check every argument with [`check_arg`] before anything is
//! queued for sending.

/// An argument contained a byte that would end or corrupt the command line.
///
/// The offending argument itself is not stored, because it may be a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("command argument contains {} at byte {position}; CR, LF and NUL are not allowed", describe(*byte))]
pub struct ForbiddenByte {
    /// The forbidden byte (`\r`, `\n` or `\0`).
    pub byte: u8,
    /// Its offset in the argument.
    pub position: usize,
}

fn describe(byte: u8) -> &'static str {
    match byte {
        b'\r' => "CR",
        b'\n' => "LF",
        _ => "NUL",
    }
}

/// Checks that `arg` contains no CR, LF or NUL.
///
/// ```
/// use mail_common::check_arg;
/// assert!(check_arg(b"alice@example.org").is_ok());
/// let err = check_arg(b"alice\r\nDELE 1").unwrap_err();
/// assert_eq!((err.byte, err.position), (b'\r', 5));
/// ```
pub fn check_arg(arg: impl AsRef<[u8]>) -> Result<(), ForbiddenByte> {
    let arg = arg.as_ref();
    match memchr::memchr3(b'\r', b'\n', 0, arg) {
        Some(position) => Err(ForbiddenByte {
            byte: arg[position],
            position,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_arg;

    #[test]
    fn rejects_each_forbidden_byte_and_accepts_the_rest() {
        for (input, byte, pos) in [
            (&b"a\nb"[..], b'\n', 1),
            (b"\rab", b'\r', 0),
            (b"ab\0", 0, 2),
        ] {
            let err = check_arg(input).unwrap_err();
            assert_eq!((err.byte, err.position), (byte, pos));
        }
        let all_others: Vec<u8> = (0..=255u8)
            .filter(|b| ![b'\r', b'\n', 0].contains(b))
            .collect();
        assert!(check_arg(&all_others).is_ok());
        assert!(check_arg("").is_ok());
    }

    #[test]
    fn error_message_does_not_echo_the_argument() {
        let msg = check_arg("secret\npassword").unwrap_err().to_string();
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("LF"), "{msg}");
    }
}
