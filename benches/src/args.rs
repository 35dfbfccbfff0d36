//! A minimal `--name value` command-line parser (no dependency; the programs take a handful of
//! options and are only run by the benchmark runner).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

/// Parsed `--name value` pairs and `--flag`s.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    program: String,
}

impl Args {
    /// Parses the process arguments. `flags` lists the options that take no value.
    pub fn from_env(flags: &[&str]) -> Self {
        let mut raw = std::env::args();
        let program = raw.next().unwrap_or_default();
        let mut values = HashMap::new();
        while let Some(arg) = raw.next() {
            let Some(name) = arg.strip_prefix("--") else {
                die(&program, &format!("unexpected argument {arg:?}"));
            };
            if flags.contains(&name) {
                values.insert(name.to_owned(), String::new());
            } else {
                let Some(value) = raw.next() else {
                    die(&program, &format!("--{name} needs a value"));
                };
                values.insert(name.to_owned(), value);
            }
        }
        Self { values, program }
    }

    /// True when the flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The value of `--name`, parsed; `default` when absent.
    pub fn get_or<T: FromStr>(&self, name: &str, default: T) -> T {
        self.values.get(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| die(&self.program, &format!("--{name}: cannot parse {v:?}")))
        })
    }

    /// The value of `--name`, parsed, if given.
    pub fn opt<T: FromStr>(&self, name: &str) -> Option<T> {
        self.values.contains_key(name).then(|| self.required(name))
    }

    /// The value of `--name`, which must be given.
    pub fn required<T: FromStr>(&self, name: &str) -> T {
        let Some(v) = self.values.get(name) else {
            die(&self.program, &format!("--{name} is required"));
        };
        v.parse()
            .unwrap_or_else(|_| die(&self.program, &format!("--{name}: cannot parse {v:?}")))
    }

    /// A path option, which must be given.
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.required::<String>(name))
    }

    /// The password, read from the environment variable named by `--password-env`.
    pub fn password(&self) -> String {
        let var: String = self.required("password-env");
        std::env::var(&var)
            .unwrap_or_else(|_| die(&self.program, &format!("environment variable {var} unset")))
    }
}

/// Prints `program: message` and exits with status 2.
pub fn die(program: &str, message: &str) -> ! {
    eprintln!("{program}: {message}");
    std::process::exit(2)
}
