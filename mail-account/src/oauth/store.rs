//! The token file: the refresh token and the cached access token with its expiry, readable by
//! the owner only, replaced atomically (temporary file, fsync, rename, fsync of the folder) so
//! a crash leaves either the old or the new tokens, never a torn file.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use mail_common::Secret;
use serde::{Deserialize, Serialize};

use super::OAuthError;

/// The tokens of one account. `Debug` shows no token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The refresh token, if the server issued one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::opt_secret_string"
    )]
    pub refresh_token: Option<Secret<String>>,
    /// The last access token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::opt_secret_string"
    )]
    pub access_token: Option<Secret<String>>,
    /// When the access token expires, in seconds since the Unix epoch (`None`: unknown, so it
    /// is refreshed before each use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An exclusive lock on a token file (see [`TokenFile::lock`]); released on drop.
#[derive(Debug)]
pub struct TokenLock {
    _file: fs::File,
}

/// Where an account's tokens live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The token file at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, action: &str, reason: impl std::fmt::Display) -> OAuthError {
        OAuthError::TokenFile {
            path: self.path.clone(),
            reason: format!("{action}: {reason}"),
        }
    }

    /// Takes an exclusive lock on `<token file>.lock` (waiting for it), held until the guard is
    /// dropped: two processes refreshing at once would both spend the same refresh token, and
    /// with rotation the second would get `invalid_grant`. On non-Unix systems this is a no-op.
    pub async fn lock(&self) -> Result<TokenLock, OAuthError> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.error("cannot create its folder", e))?;
        }
        let mut options = fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| self.error("cannot open its lock file", e))?;
        #[cfg(unix)]
        let file = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        })
        .await
        .map_err(|e| self.error("cannot lock", e))?
        .map_err(|e| self.error("cannot lock", e))?;
        Ok(TokenLock { _file: file })
    }

    /// Reads the tokens. A missing file gives [`OAuthError::NotSignedIn`]. The content is never
    /// quoted in errors.
    pub fn load(&self) -> Result<StoredTokens, OAuthError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OAuthError::NotSignedIn);
            }
            Err(e) => return Err(self.error("cannot read", e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            // serde_json's message names a line and column, never the content.
            self.error("not a token file", e)
        })
    }

    /// Replaces the tokens atomically: a temporary file created with mode 0600 in the same
    /// folder, written and fsynced, renamed over the old file, then the folder fsynced.
    pub fn save(&self, tokens: &StoredTokens) -> Result<(), OAuthError> {
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| self.error("cannot encode", e))?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| self.error("cannot create its folder", e))?;
        let name = self
            .path
            .file_name()
            .map_or_else(|| "tokens".into(), |n| n.to_string_lossy().into_owned());
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let written = (|| {
            let mut file = options.open(&temp)?;
            // An older temporary file may have had wider permissions.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            // The rename is durable only once the folder is.
            if let Ok(folder) = fs::File::open(&dir) {
                let _ = folder.sync_all();
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(self.error("cannot write", e));
        }
        Ok(())
    }
}
