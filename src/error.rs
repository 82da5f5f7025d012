//! The crate's one error type.

use std::{borrow::Cow, error::Error as StdError, fmt};

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting (environment variable, builder value) is missing or malformed.
    Config,
    /// No credential could produce a token, or the one that was chosen failed.
    Credential,
    /// A server rejected the credentials it was given.
    Auth,
    /// A network or I/O failure talking to a server.
    Io,
    /// A wait, connect or recycle timed out.
    Timeout,
    /// The database answered with an error.
    Database,
    /// An input (an upload, a blob name, a form field) was refused: wrong type, bad name.
    InvalidInput,
    /// An upload was larger than the configured limit.
    TooLarge,
    /// The thing asked for (a container, a blob) does not exist.
    NotFound,
    /// A local emulated server could not be started or controlled.
    Emulator,
}

/// The error returned by this crate.
///
/// It is opaque on purpose: match on [`Error::kind`] or use the `is_*` helpers.
/// `Display` prints only this error's own message, lowercase and without its cause; walk
/// [`std::error::Error::source`] (or use [`Error::report`]) for the whole story. No token,
/// password or key is ever part of the message.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    pub(crate) fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// `true` for a missing or malformed setting.
    pub fn is_config(&self) -> bool {
        self.0.kind == ErrorKind::Config
    }

    /// `true` when no token could be had from the credential.
    pub fn is_credential(&self) -> bool {
        self.0.kind == ErrorKind::Credential
    }

    /// `true` when a server rejected the credentials.
    pub fn is_auth(&self) -> bool {
        self.0.kind == ErrorKind::Auth
    }

    /// `true` for an upload over the size limit.
    pub fn is_too_large(&self) -> bool {
        self.0.kind == ErrorKind::TooLarge
    }

    /// `true` for a refused input (wrong content type, bad name).
    pub fn is_invalid_input(&self) -> bool {
        self.0.kind == ErrorKind::InvalidInput
    }

    /// This error and every cause below it, joined by `": "`.
    ///
    /// Useful for logs: upstream errors often print only "failed to execute request" and keep the
    /// reason in their own sources.
    pub fn report(&self) -> String {
        report(self)
    }
}

/// Joins an error and its chain of sources into one line, skipping a cause whose text the
/// previous line already contains (azure_core repeats its cause in its own message).
pub(crate) fn report(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind).field("message", &self.0.message);
        if let Some(source) = &self.0.source {
            d.field("source", &report(source.as_ref()));
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

impl From<Error> for azure_core::Error {
    fn from(err: Error) -> Self {
        let kind = match err.kind() {
            ErrorKind::Io | ErrorKind::Timeout => azure_core::error::ErrorKind::Io,
            ErrorKind::Config => azure_core::error::ErrorKind::Other,
            _ => azure_core::error::ErrorKind::Credential,
        };
        azure_core::Error::new(kind, err)
    }
}

/// Convenience alias for `Result<T, azure_passwordless::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_does_not_repeat_the_cause() {
        let err = Error::config("DBPORT must be a port number").with_source(std::io::Error::other("inner"));
        assert_eq!(err.to_string(), "DBPORT must be a port number");
        assert_eq!(err.report(), "DBPORT must be a port number: inner");
        assert!(err.is_config());
    }

    #[test]
    fn report_skips_causes_already_in_the_message() {
        let inner = std::io::Error::other("connection refused");
        let err = Error::new(ErrorKind::Io, "request failed: connection refused").with_source(inner);
        assert_eq!(err.report(), "request failed: connection refused");
    }
}
