//! `mailctl` for everyday use, end to end against the test ground: `list` over a mailbox with
//! Japanese and broken subjects, completions that load in bash, the man page kept current.
//!
//! User: `mia` (100 messages at reset, scratch). Tests that change or read her mailbox reset
//! it first and are serialized by a lock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_testground::{MIA, User};

static MIA_LOCK: Mutex<()> = Mutex::new(());

/// `mailctl`, with the test ground's provider file for discovery.
fn mailctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailctl"));
    command.env("MAILCTL_PROVIDER_FILE", mail_testground::provider_file());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("mailctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailctl-everyday-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lock_mia() -> std::sync::MutexGuard<'static, ()> {
    MIA_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `--host ... --password-env ...` for POP3S of `user`.
fn pop3_flags(command: &mut Command, user: &User) {
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "11995",
            "--tls",
            "implicit",
        ])
        .args(["--user", user.name, "--password-env", "TG_PASSWORD"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .env("TG_PASSWORD", user.password);
}

/// Submission (10587, STARTTLS) as `user`.
fn smtp_flags(command: &mut Command, user: &User) {
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "10587",
            "--tls",
            "starttls",
        ])
        .args(["--user", user.name, "--password-env", "TG_PASSWORD"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .env("TG_PASSWORD", user.password);
}

fn server_count(user: &User) -> usize {
    let maildir = mail_testground::maildir(user);
    ["new", "cur"]
        .iter()
        .map(|sub| std::fs::read_dir(maildir.join(sub)).map_or(0, Iterator::count))
        .sum()
}

/// Waits until Postfix has delivered `user`'s mailbox up to `count` messages.
fn wait_for_count(user: &User, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server_count(user) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server_count(user), count, "delivery to {}", user.name);
}

/// Sends a message file to `to` through Postfix submission as `from`.
fn send_file(from: &User, to: &str, file: &Path) {
    let mut command = mailctl();
    command.arg("send");
    smtp_flags(&mut command, from);
    let output = run(command.args(["--from", from.address, "--to", to]).arg(file));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn list_shows_decoded_japanese_subjects_and_survives_broken_ones() {
    let _lock = lock_mia();
    mail_testground::reset_mailboxes(&[MIA]);
    let dir = scratch("list");
    // Subjects as Japanese mailers send them (encoded words in ISO-2022-JP and Shift_JIS),
    // a UTF-8 one with a non-ASCII sender name, raw ISO-2022-JP with no encoded word at all
    // (old mailers), and two broken ones (invalid base64, an unknown charset).
    let messages: [(&str, &str); 6] = [
        (
            "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@testground.example>",
            "Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=",
        ),
        (
            "From: sjis@testground.example",
            "Subject: =?Shift_JIS?B?g2WDWINn?=",
        ),
        (
            "From: =?UTF-8?B?U8OpYmFzdGllbg==?= <seb@testground.example>",
            "Subject: =?UTF-8?B?5pel5pys?= =?UTF-8?Q?=E8=AA=9E_utf8?=",
        ),
        (
            "From: raw@testground.example",
            "Subject: raw \x1b$BF|K\\8l\x1b(B",
        ),
        (
            "From: broken@testground.example",
            "Subject: =?UTF-8?B?@@@not base64!?= tail1",
        ),
        (
            "From: unknown@testground.example",
            "Subject: =?x-no-such-charset?Q?abc?= tail2",
        ),
    ];
    for (i, (from, subject)) in messages.iter().enumerate() {
        let file = dir.join(format!("{i}.eml"));
        let message = format!(
            "{from}\r\nTo: {to}\r\n{subject}\r\nDate: Tue, 14 Nov 2023 22:13:2{i} +0900\r\n\
             Message-ID: <list.{i}@testground.example>\r\n\r\nbody {i}\r\n",
            to = MIA.address
        );
        std::fs::write(&file, message).unwrap();
        send_file(&MIA, MIA.address, &file);
    }
    wait_for_count(&MIA, 106);

    let mut command = mailctl();
    command.arg("list");
    pop3_flags(&mut command, &MIA);
    let output = run(command.arg("--json"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed = json["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 106);
    let by_sender = |address: &str| {
        listed
            .iter()
            .find(|m| m["from"]["address"] == address)
            .unwrap_or_else(|| panic!("no message from {address} in {json:#}"))
            .clone()
    };
    let iso = by_sender("yamada@testground.example");
    assert_eq!(iso["subject"], "日本語");
    assert_eq!(iso["from"]["name"], "山田");
    assert_eq!(iso["date"], "2023-11-14T22:13:20+09:00");
    assert!(iso["number"].as_u64().unwrap() > 100);
    assert!(iso["size"].as_u64().unwrap() > 100);
    assert!(iso["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(by_sender("sjis@testground.example")["subject"], "テスト");
    let utf8 = by_sender("seb@testground.example");
    assert_eq!(utf8["subject"], "日本語 utf8");
    assert_eq!(utf8["from"]["name"], "Sébastien");
    assert_eq!(by_sender("raw@testground.example")["subject"], "raw 日本語");
    // Broken encodings: the message is listed, its subject shown as well as it can be.
    let broken = by_sender("broken@testground.example");
    assert!(
        broken["subject"].as_str().unwrap().ends_with("tail1"),
        "{broken}"
    );
    let unknown = by_sender("unknown@testground.example");
    assert!(
        unknown["subject"].as_str().unwrap().ends_with("tail2"),
        "{unknown}"
    );
    // The seeded messages are there too, and nothing was downloaded or changed.
    assert_eq!(listed[0]["number"], 1);
    assert_eq!(listed[0]["subject"], "[tg] mia message 1 of 100");
    assert_eq!(server_count(&MIA), 106);

    // The table: one line per message, the decoded subjects in it.
    let mut command = mailctl();
    command.arg("list");
    pop3_flags(&mut command, &MIA);
    let output = run(command.args(["--last", "6"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
    for needle in ["日本語", "テスト", "山田 <yamada@testground", "日本語 utf8"] {
        assert!(stdout.contains(needle), "{needle:?} in {stdout}");
    }
    assert!(stdout.contains("2023-11-14 22:13"), "{stdout}");

    // A wrong password is an authentication failure, as for fetch.
    let mut command = mailctl();
    command.arg("list");
    pop3_flags(&mut command, &MIA);
    let output = run(command.env("TG_PASSWORD", "wrong"));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    // Loads the script as a user's .bashrc would, then asks the completion function what it
    // offers, the way bash does on TAB.
    let script = format!(
        r#"source <("{mailctl}" completions bash) || exit 1
complete -p mailctl || exit 1
COMP_WORDS=(mailctl li); COMP_CWORD=1; COMP_LINE="mailctl li"; COMP_POINT=10
_mailctl mailctl li mailctl
echo "subcommands: ${{COMPREPLY[*]}}"
COMP_WORDS=(mailctl fetch --mai); COMP_CWORD=2; COMP_LINE="mailctl fetch --mai"; COMP_POINT=19
_mailctl mailctl --mai fetch
echo "flags: ${{COMPREPLY[*]}}"
"#,
        mailctl = env!("CARGO_BIN_EXE_mailctl")
    );
    let output = run(Command::new("bash").args(["--norc", "-c", &script]));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("complete -o bashdefault -o default -o nosort -F _mailctl mailctl"),
        "{stdout}"
    );
    assert!(stdout.contains("subcommands: list\n"), "{stdout}");
    assert!(stdout.contains("flags: --maildir\n"), "{stdout}");

    // zsh and fish are not installed here: their scripts are checked for their shape only.
    let zsh = run(mailctl().args(["completions", "zsh"]));
    assert!(text(&zsh.stdout).starts_with("#compdef mailctl"));
    let fish = run(mailctl().args(["completions", "fish"]));
    assert!(text(&fish.stdout).contains("complete -c mailctl"));
    let unknown = run(mailctl().args(["completions", "tcsh"]));
    assert_eq!(unknown.status.code(), Some(2));
}

/// The committed man pages (`examples/man`) are what the flags generate now. To update them
/// after changing a flag: `cargo run -p mail-examples --bin mailctl -- man --dir examples/man`,
/// or run this test with `MAILCTL_UPDATE_MAN=1`.
#[test]
fn man_pages_are_generated_from_the_flags_and_committed_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    if std::env::var_os("MAILCTL_UPDATE_MAN").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        let output = run(mailctl().args(["man", "--dir"]).arg(&committed));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let fresh = scratch("man");
    let output = run(mailctl().args(["man", "--dir"]).arg(&fresh));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let stale = "is stale: regenerate with `cargo run -p mail-examples --bin mailctl -- man --dir \
                 examples/man` and commit it";
    assert_eq!(names(&fresh), names(&committed), "examples/man {stale}");
    for name in names(&fresh) {
        let now = std::fs::read_to_string(fresh.join(&name)).unwrap();
        let then = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert!(now == then, "examples/man/{name} {stale}");
        // Every page is valid roff: groff reports no warning.
        let groff = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(committed.join(&name)));
        assert!(
            groff.status.success() && groff.stderr.is_empty(),
            "{name}: {}",
            text(&groff.stderr)
        );
    }
    let main = std::fs::read_to_string(committed.join("mailctl.1")).unwrap();
    for needle in [
        "mailctl\\-list(1)",
        ".SH \"EXIT STATUS\"",
        "authentication refused",
    ] {
        assert!(main.contains(needle), "{needle:?} in mailctl.1");
    }
}

/// The TOML of an account of `user` on the test ground (POP3S 11995, submission 10587 with
/// STARTTLS, the test CA, the password from `TG_PASSWORD`), with `extra` lines at the top.
fn account_toml(user: &User, extra: &str) -> String {
    format!(
        r#"address = "{address}"
{extra}

[incoming]
host = "127.0.0.1"
port = 11995
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[outgoing]
host = "127.0.0.1"
port = 10587
security = "starttls"
username = "{{local}}"
auth = "automatic"

[credential]
env = "TG_PASSWORD"

[tls]
extra_ca_file = "{ca}"
"#,
        address = user.address,
        ca = mail_testground::ca_file().display()
    )
}

/// The raw bytes of every message file in `user`'s server Maildir whose text contains `needle`.
fn server_messages_containing(user: &User, needle: &str) -> Vec<String> {
    let maildir = mail_testground::maildir(user);
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub)).into_iter().flatten() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

/// The value of the first header field `name` of a stored message (unfolded).
fn header_value(message: &str, name: &str) -> String {
    let header = &message[..message.find("\n\n").unwrap_or(message.len())];
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut lines = header
        .lines()
        .skip_while(|l| !l.to_ascii_lowercase().starts_with(&prefix));
    let mut value = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} in {message}"))[prefix.len()..]
        .trim()
        .to_owned();
    for continuation in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        value.push(' ');
        value.push_str(continuation.trim());
    }
    value
}

/// From is `=?utf-8?B?<base64>?= <mia@testground.example>`: the name RFC 2047-encoded.
fn assert_encoded_from(message: &str, base64: &str) {
    let from = header_value(message, "From");
    assert!(from.is_ascii(), "{from}");
    assert!(
        from.to_ascii_lowercase()
            .starts_with(&format!("=?utf-8?b?{}?=", base64.to_ascii_lowercase())),
        "{from}"
    );
    assert!(from.ends_with(" <mia@testground.example>"), "{from}");
}

#[test]
fn the_accounts_display_name_goes_into_from_rfc2047_encoded() {
    let _lock = lock_mia();
    mail_testground::reset_mailboxes(&[MIA]);
    let dir = scratch("display-name");
    let account = dir.join("mia.toml");
    std::fs::write(&account, account_toml(&MIA, "display_name = \"山田 太郎\"")).unwrap();
    let send = |extra: &[&str], body: &str| {
        let output = run(mailctl()
            .args(["send", "--account"])
            .arg(&account)
            .args([
                "--to",
                MIA.address,
                "--subject",
                "表示名のテスト",
                "--body",
                body,
            ])
            .args(extra)
            .env("TG_PASSWORD", MIA.password));
        assert!(output.status.success(), "{}", text(&output.stderr));
    };
    // No --from and no --name: both come from the account.
    send(&[], "display-name-body-1");
    // --name wins over the account's display name for this call.
    send(&["--name", "Taro Yamada"], "display-name-body-2");
    wait_for_count(&MIA, 102);

    let raw = server_messages_containing(&MIA, "display-name-body-1");
    assert_eq!(raw.len(), 1);
    // 山田 太郎 as one UTF-8 B-encoded word: only ASCII on the wire.
    assert_encoded_from(&raw[0], "5bGx55SwIOWkqumDjg==");
    let raw = server_messages_containing(&MIA, "display-name-body-2");
    assert_eq!(
        header_value(&raw[0], "From"),
        "\"Taro Yamada\" <mia@testground.example>"
    );

    // What a mail reader shows: the decoded name (here through mailctl list).
    let output = run(mailctl()
        .args(["list", "--json", "--last", "2", "--account"])
        .arg(&account)
        .env("TG_PASSWORD", MIA.password));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["from"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"山田 太郎"), "{json:#}");
    assert!(names.contains(&"Taro Yamada"), "{json:#}");
    assert_eq!(json["messages"][0]["subject"], "表示名のテスト");
}

/// mailctl with its configuration found the XDG way under `xdg` (no --config, no
/// $MAILCTL_CONFIG).
fn mailctl_xdg(xdg: &Path) -> Command {
    let mut command = mailctl();
    command
        .env("XDG_CONFIG_HOME", xdg)
        .env_remove("MAILCTL_CONFIG")
        .env("TG_PASSWORD", MIA.password);
    command
}

#[test]
fn named_accounts_in_one_configuration_file() {
    let _lock = lock_mia();
    let dir = scratch("accounts");
    let xdg = dir.join("xdg");
    let config = xdg.join("mailctl/accounts.toml");
    let ca = mail_testground::ca_file();

    // discover --save writes entries; the first becomes the default, the file is 0600.
    let output = run(mailctl_xdg(&xdg)
        .args(["discover", MIA.address, "--offline", "--save", "mia"])
        .args([
            "--password-env",
            "TG_PASSWORD",
            "--display-name",
            "山田 花子",
        ])
        .arg("--ca-file")
        .arg(&ca));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("saved:    account mia in"));
    let output = run(mailctl_xdg(&xdg)
        .args(["discover", MIA.address, "--offline", "--save", "second"])
        .args(["--password-command", "printf mia-pass"])
        .arg("--ca-file")
        .arg(&ca));
    assert!(output.status.success(), "{}", text(&output.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.starts_with("default = \"mia\"\n"), "{saved}");
    assert!(
        saved.contains("command = [\"printf\", \"mia-pass\"]"),
        "{saved}"
    );
    // Saving a name twice is refused, and the file is unchanged.
    let output =
        run(mailctl_xdg(&xdg).args(["discover", MIA.address, "--offline", "--save", "mia"]));
    assert_eq!(output.status.code(), Some(10));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), saved);

    // mailctl accounts lists them, the default marked.
    let output = run(mailctl_xdg(&xdg).arg("accounts"));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("* mia          山田 花子 <mia@testground.example>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  second       mia@testground.example"),
        "{stdout}"
    );

    let output = run(mailctl_xdg(&xdg).args(["accounts", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["accounts"][0]["name"], "mia");
    assert_eq!(json["accounts"][0]["default"], true);
    assert_eq!(json["accounts"][0]["display_name"], "山田 花子");
    assert_eq!(json["accounts"][1]["default"], false);

    // No -a: the default account; -a NAME: that one (its password from the command).
    let output = run(mailctl_xdg(&xdg).args(["list", "--last", "1", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(mailctl_xdg(&xdg)
        .env_remove("TG_PASSWORD")
        .args(["list", "-a", "second", "--last", "1"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let maildir = dir.join("Maildir");
    let output = run(mailctl_xdg(&xdg)
        .args(["fetch", "-a", "mia", "--max-messages", "2", "--maildir"])
        .arg(&maildir));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("fetched 2 messages"));
    // Server flags without --host do not fall back to the default account silently.
    let output = run(mailctl_xdg(&xdg).args(["list", "--user", "mia"]));
    assert_eq!(output.status.code(), Some(10));
    assert!(
        text(&output.stderr).contains("--host"),
        "{}",
        text(&output.stderr)
    );
    let output = run(mailctl_xdg(&xdg).args(["list", "-a", "nobody"]));
    assert_eq!(output.status.code(), Some(10));
    assert!(
        text(&output.stderr).contains("no account \"nobody\"")
            && text(&output.stderr).contains("mia, second"),
        "{}",
        text(&output.stderr)
    );

    // $MAILCTL_CONFIG and --config name another file. One holding a password itself is
    // refused while others can read it (as msmtp does), and used once it is 0600.
    let with_password = dir.join("with-password.toml");
    let entry = account_toml(&MIA, "").replace(
        "[credential]\nenv = \"TG_PASSWORD\"",
        "[credential]\npassword = \"mia-pass\"",
    );
    std::fs::write(&with_password, as_named_account("pw", &entry)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&with_password, std::fs::Permissions::from_mode(0o644)).unwrap();
        let output = run(mailctl_xdg(&xdg)
            .env_remove("TG_PASSWORD")
            .env("MAILCTL_CONFIG", &with_password)
            .args(["list", "--last", "1"]));
        assert_eq!(output.status.code(), Some(10), "{}", text(&output.stdout));
        assert!(
            text(&output.stderr).contains("holds a password and is readable by others (mode 644)"),
            "{}",
            text(&output.stderr)
        );
        // The same rule for a single account file given with -a.
        let single = dir.join("single.toml");
        std::fs::write(&single, &entry).unwrap();
        std::fs::set_permissions(&single, std::fs::Permissions::from_mode(0o640)).unwrap();
        let output = run(mailctl_xdg(&xdg).arg("list").arg("-a").arg(&single));
        assert_eq!(output.status.code(), Some(10), "{}", text(&output.stdout));
        assert!(
            text(&output.stderr).contains("readable by others (mode 640)"),
            "{}",
            text(&output.stderr)
        );
        std::fs::set_permissions(&with_password, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let output = run(mailctl_xdg(&xdg)
        .env_remove("TG_PASSWORD")
        .env("MAILCTL_CONFIG", &with_password)
        .args(["list", "--last", "1"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(mailctl_xdg(&xdg)
        .env_remove("TG_PASSWORD")
        .arg("list")
        .arg("--config")
        .arg(&with_password)
        .args(["-a", "pw", "--last", "1"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// `toml` (an account file's text) as the table `[accounts.NAME]` of a configuration file.
fn as_named_account(name: &str, toml: &str) -> String {
    let body: String = toml
        .lines()
        .map(|line| match line.strip_prefix('[') {
            Some(table) => format!("[accounts.{name}.{table}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    format!("[accounts.{name}]\n{body}")
}

/// A configuration file in `dir` with mia's account as the default.
fn mia_config(dir: &Path) -> PathBuf {
    let path = dir.join("accounts.toml");
    let toml = format!(
        "default = \"mia\"\n\n{}",
        as_named_account("mia", &account_toml(&MIA, "display_name = \"山田 花子\""))
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `program args` with `stdin` as its input and the configuration `config`.
fn run_with_stdin(program: &Path, args: &[&str], config: &Path, stdin: &[u8]) -> Output {
    run_with_stdin_as(program, args, config, stdin, MIA.password)
}

/// [`run_with_stdin`] with `password` in the account's variable.
fn run_with_stdin_as(
    program: &Path,
    args: &[&str],
    config: &Path,
    stdin: &[u8],
    password: &str,
) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env("MAILCTL_CONFIG", config)
        .env("TG_PASSWORD", password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mailctl starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn sendmail_t_i_like_git_send_email_and_as_argv0_sendmail() {
    let _lock = lock_mia();
    mail_testground::reset_mailboxes(&[MIA]);
    let dir = scratch("sendmail");
    let config = mia_config(&dir);
    let mailctl_bin = Path::new(env!("CARGO_BIN_EXE_mailctl"));

    // What git send-email writes to `sendmail -i -t`: a full header with To, Cc and Bcc, and
    // a patch with a line holding a single dot.
    let patch = format!(
        "From: Mia Tester <{mia}>\nTo: {mia}\nCc: reviewer@sink.testground.example\n\
         Bcc: archive@sink.testground.example,\n secret@sink.testground.example\n\
         Subject: [PATCH 1/1] sendmail: first\nMessage-ID: <sendmail.patch.1@testground.example>\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0900\n\n---\n.\n+after the dot\n",
        mia = MIA.address
    );
    let output = run_with_stdin(
        mailctl_bin,
        &["sendmail", "-i", "-t"],
        &config,
        patch.as_bytes(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));

    // Run as `sendmail` (a symlink), mutt style: -oi, -oem, recipients after --. The message
    // has no From and no Date: both are added (the display name from the account).
    let link = dir.join("sendmail");
    std::os::unix::fs::symlink(mailctl_bin, &link).unwrap();
    let note =
        "Subject: cron output\nMessage-ID: <sendmail.cron.1@testground.example>\n\nall done\n";
    let output = run_with_stdin(
        &link,
        &["-oem", "-oi", "--", MIA.address],
        &config,
        note.as_bytes(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_for_count(&MIA, 102);

    let patch_copy = server_messages_containing(&MIA, "sendmail.patch.1");
    assert_eq!(patch_copy.len(), 1, "one copy for mia");
    let copy = &patch_copy[0];
    assert!(!copy.to_ascii_lowercase().contains("\nbcc:"), "{copy}");
    assert!(!copy.contains("secret@"), "{copy}");
    assert!(
        copy.contains("\nCc: reviewer@sink.testground.example\n"),
        "{copy}"
    );
    assert!(copy.ends_with("\n---\n.\n+after the dot\n"), "{copy}");
    let cron = &server_messages_containing(&MIA, "sendmail.cron.1")[0];
    assert_encoded_from(cron, "5bGx55SwIOiKseWtkA==");
    assert!(cron.contains("\nDate: "), "{cron}");

    // The Bcc addresses were in the envelope: an unknown one is refused by Postfix (550),
    // named on stderr, and the status is EX_DATAERR (65); mia still gets her copy.
    let refused = format!(
        "To: {mia}\nBcc: nobody@testground.example\nSubject: half\nMessage-ID: <sendmail.half.1@testground.example>\n\nx\n",
        mia = MIA.address
    );
    let output = run_with_stdin(
        mailctl_bin,
        &["sendmail", "-t"],
        &config,
        refused.as_bytes(),
    );
    assert_eq!(output.status.code(), Some(65), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("recipient nobody@testground.example refused: 550"),
        "{}",
        text(&output.stderr)
    );
    wait_for_count(&MIA, 103);

    // Usage, data and settings errors.
    let output = run_with_stdin(
        mailctl_bin,
        &["sendmail", "-t"],
        &config,
        b"Subject: nobody\n\nx\n",
    );
    assert_eq!(
        output.status.code(),
        Some(65),
        "no recipient: {}",
        text(&output.stderr)
    );
    let output = run_with_stdin(&link, &["--no-such-flag"], &config, b"");
    assert_eq!(output.status.code(), Some(64), "{}", text(&output.stderr));
    let output = run_with_stdin(
        mailctl_bin,
        &["sendmail", "-a", "nobody", MIA.address],
        &config,
        b"x\n",
    );
    assert_eq!(output.status.code(), Some(78), "{}", text(&output.stderr));
    let wrong = run_with_stdin_as(
        mailctl_bin,
        &["sendmail", MIA.address],
        &config,
        b"Subject: x\n\nx\n",
        "wrong",
    );
    assert_eq!(
        wrong.status.code(),
        Some(77),
        "auth: {}",
        text(&wrong.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sendmail_exits_75_on_temporary_failures() {
    use mail_testground::hostile::{HostileServer, Pki, Step};
    let dir = scratch("sendmail-temp");
    // A server that greylists (451 at RCPT), as real ones do for a first-time sender.
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("220 greylist.example ESMTP\r\n"),
            Step::expect("EHLO"),
            Step::send("250 greylist.example\r\n"),
            Step::expect("MAIL FROM"),
            Step::send("250 2.1.0 ok\r\n"),
            Step::expect("RCPT TO"),
            Step::send("451 4.7.1 greylisted, try again in 5 minutes\r\n"),
            Step::ExpectAny,
            Step::send("221 2.0.0 bye\r\n"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let plain = |port: u16| {
        account_toml(&MIA, "")
            .replace(
                "port = 10587\nsecurity = \"starttls\"",
                &format!("port = {port}\nsecurity = \"none\""),
            )
            .replace(
                "username = \"{local}\"\nauth = \"automatic\"\n\n[credential]",
                "username = \"{local}\"\nauth = \"none\"\n\n[credential]",
            )
    };
    let config = dir.join("accounts.toml");
    // Port 1 on loopback: connection refused, the network kind of temporary failure.
    std::fs::write(
        &config,
        format!(
            "{}\n{}",
            as_named_account("greylist", &plain(server.port())),
            as_named_account("down", &plain(1))
        ),
    )
    .unwrap();
    let mailctl_bin = Path::new(env!("CARGO_BIN_EXE_mailctl"));
    let (config_a, bin) = (config.clone(), mailctl_bin.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        run_with_stdin(
            &bin,
            &["sendmail", "-a", "greylist", "a@example.org"],
            &config_a,
            b"Subject: x\n\nx\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(75), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("451 4.7.1 greylisted"),
        "{}",
        text(&output.stderr)
    );
    let transcript = server.finish().await;
    assert!(
        !transcript.any_contains(b"DATA"),
        "nothing sent after the refusal"
    );
    let output = tokio::task::spawn_blocking(move || {
        run_with_stdin(
            mailctl_bin,
            &["sendmail", "-a", "down", "a@example.org"],
            &config,
            b"Subject: x\n\nx\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(75), "{}", text(&output.stderr));
}

#[test]
fn attach_sends_mime_parts_that_python_reads_back() {
    let _lock = lock_mia();
    mail_testground::reset_mailboxes(&[MIA]);
    let dir = scratch("attach");
    let account = dir.join("mia.toml");
    std::fs::write(&account, account_toml(&MIA, "display_name = \"山田 太郎\"")).unwrap();
    // A binary with a Japanese name, and a text file.
    let pdf = dir.join("見積書 2024年.pdf");
    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&pdf, &binary).unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "line one\n.\nline three\n").unwrap();
    let output = run(mailctl()
        .args(["send", "-a"])
        .arg(&account)
        .args([
            "--to",
            MIA.address,
            "--subject",
            "添付ファイル",
            "--body",
            "attach-body-1",
        ])
        .arg("--attach")
        .arg(&pdf)
        .arg("--attach")
        .arg(&notes)
        .env("TG_PASSWORD", MIA.password));
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_for_count(&MIA, 101);
    let raw = server_messages_containing(&MIA, "attach-body-1");
    assert_eq!(raw.len(), 1);
    assert!(raw[0].contains("filename*="), "RFC 2231 name: {}", raw[0]);
    let stored = dir.join("stored.eml");
    std::fs::write(&stored, &raw[0]).unwrap();

    // Python's email package (an independent MIME reader) sees the parts as sent.
    let script = r#"
import email, email.policy, hashlib, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
print("subject", m["subject"])
print("from", m["from"].addresses[0].display_name)
print("type", m.get_content_type())
for part in m.iter_attachments():
    data = part.get_payload(decode=True)
    print("part", part.get_content_type(), part.get_filename(), len(data), hashlib.sha256(data).hexdigest())
"#;
    let output = run(Command::new("python3").arg("-c").arg(script).arg(&stored));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let sha256 = |bytes: &[u8]| {
        let output = run(Command::new("python3")
            .args(["-c", "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"])
            .arg(bytes_path(&dir, bytes)));
        text(&output.stdout).trim().to_owned()
    };
    assert!(stdout.contains("subject 添付ファイル\n"), "{stdout}");
    assert!(stdout.contains("from 山田 太郎\n"), "{stdout}");
    assert!(stdout.contains("type multipart/mixed\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "part application/pdf 見積書 2024年.pdf 5000 {}\n",
            sha256(&binary)
        )),
        "{stdout}"
    );
    let notes_bytes = std::fs::read(&notes).unwrap();
    assert!(
        stdout.contains(&format!("part text/plain notes.txt {} ", notes_bytes.len())),
        "{stdout}"
    );

    // --attach needs a composed message.
    let output = run(mailctl()
        .args(["send", "-a"])
        .arg(&account)
        .args(["--to", MIA.address, "--attach"])
        .arg(&notes));
    assert_eq!(output.status.code(), Some(2));
}

/// Writes `bytes` to a file in `dir` and returns its path.
fn bytes_path(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("bytes.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn list_against_a_hostile_server_caps_headers_and_survives_refusals() {
    use mail_testground::hostile::{HostileServer, Pki, Step};
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK hostile\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n"),
            Step::expect("USER victim"),
            Step::send("+OK\r\n"),
            Step::expect("PASS"),
            Step::send("+OK logged in\r\n"),
            Step::expect("LIST"),
            Step::send("+OK\r\n1 100\r\n2 400000\r\n3 50\r\n.\r\n"),
            Step::expect("UIDL"),
            Step::send("-ERR no unique-ids here\r\n"),
            Step::expect("TOP 1 0"),
            Step::send(
                "+OK\r\nSubject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\r\nFrom: a@example.org\r\n\r\n.\r\n",
            ),
            // A header of 350 kB (10,000 folded lines): only the first 64 KiB are kept.
            Step::expect("TOP 2 0"),
            Step::send("+OK\r\nSubject: huge\r\nX-Junk: start\r\n"),
            Step::SendRepeated {
                bytes: b" a folded line of junk, again and again\r\n".to_vec(),
                count: 10_000,
            },
            Step::send("\r\n.\r\n"),
            Step::expect("TOP 3 0"),
            Step::send("-ERR message 3 is gone\r\n"),
            Step::expect("QUIT"),
            Step::send("+OK bye\r\n"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let args: Vec<String> = [
        "list",
        "--json",
        "--host",
        "127.0.0.1",
        "--tls-name",
        "localhost",
        "--port",
        &server.port().to_string(),
        "--user",
        "victim",
        "--password-env",
        "HOSTILE_PASSWORD",
        "--timeout",
        "5",
        "--ca-file",
        &pki.ca_file().display().to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let output = tokio::task::spawn_blocking(move || {
        run(mailctl().args(args).env("HOSTILE_PASSWORD", "s3cret"))
    })
    .await
    .unwrap();
    let transcript = server.finish().await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        !transcript.any_contains(b"RETR"),
        "bodies are never downloaded"
    );
    assert!(!transcript.any_contains(b"DELE"), "nothing is deleted");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let messages = json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["subject"], "日本語");
    assert!(messages[0]["uid"].is_null());
    assert_eq!(messages[1]["subject"], "huge");
    assert_eq!(messages[1]["header_truncated"], true);
    assert_eq!(messages[1]["size"], 400_000);
    assert_eq!(messages[2]["refused"], "message 3 is gone");
    assert!(messages[2]["subject"].is_null());
}

/// `discover --save NAME --password-keyring SERVICE` writes a keyring credential; `accounts`
/// shows where the password comes from; using it without a keyring to reach (a build without
/// the `keyring` feature, or no Secret Service on this headless machine) is a settings error
/// naming the entry. (The resolution itself is tested in `mail-account/tests/keyring.rs`.)
#[test]
fn a_keyring_credential_is_saved_listed_and_named_when_unavailable() {
    let dir = scratch("keyring");
    let xdg = dir.join("xdg");
    let config = xdg.join("mailctl/accounts.toml");
    let output = run(mailctl_xdg(&xdg)
        .args(["discover", MIA.address, "--offline", "--save", "kr"])
        .args(["--password-keyring", "mailctl-test"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.contains("[accounts.kr.credential.keyring]\nservice = \"mailctl-test\"\nuser = \"mia@testground.example\""),
        "{saved}"
    );
    let output = run(mailctl_xdg(&xdg)
        .args(["discover", MIA.address, "--offline", "--save", "kr2"])
        .args([
            "--password-keyring",
            "mailctl-test",
            "--keyring-user",
            "mia",
        ]));
    assert!(output.status.success(), "{}", text(&output.stderr));

    let output = run(mailctl_xdg(&xdg).arg("accounts"));
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .contains("password: keyring service \"mailctl-test\" user \"mia@testground.example\"")
            && stdout.contains("password: keyring service \"mailctl-test\" user \"mia\""),
        "{stdout}"
    );
    let output = run(mailctl_xdg(&xdg).args(["accounts", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["accounts"][0]["credential"],
        "keyring service \"mailctl-test\" user \"mia@testground.example\""
    );

    // No D-Bus session bus here (nor a Secret Service): the use fails clearly, exit 10.
    let output = run(mailctl_xdg(&xdg)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", &dir)
        .args(["list", "-a", "kr"]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains("\"mailctl-test\"") && stderr.contains("\"mia@testground.example\""),
        "{stderr}"
    );
    assert!(stderr.contains("OS keyring entry for service"), "{stderr}");
}
