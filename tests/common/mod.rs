//! Support shared by the integration test binaries that run without libtest's harness.
//!
//! azure_identity reads IDENTITY_ENDPOINT/IDENTITY_HEADER (and PATH, for `az`) from the process
//! environment, so these binaries set them in `main` before any thread starts, then run their
//! tests in order on one runtime.
#![allow(dead_code, reason = "each test binary uses part of this")]

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged at TRACE by every crate, to check that no secret ever shows up.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics, quoting the start of the line, if any of `secrets` was logged, or naming the
    /// secret's index if it is in `debug` (the `Debug`/`Display` output a test collected).
    pub fn assert_secrets_absent(&self, secrets: &[String], debug: &str) {
        let logs = self.text();
        for (i, secret) in secrets.iter().enumerate() {
            if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
                panic!(
                    "a secret leaked into the logs: {:?}",
                    line.chars().take(160).collect::<String>()
                );
            }
            assert!(!debug.contains(secret.as_str()), "secret #{i} leaked into Debug");
        }
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An Env of `base` pairs, with each pair of `extra` replacing (or adding) its variable.
pub fn env_with<'a>(mut base: Vec<(&'a str, &'a str)>, extra: &[(&'a str, &'a str)]) -> azure_passwordless::Env {
    for (k, v) in extra {
        base.retain(|(name, _)| name != k);
        base.push((k, v));
    }
    azure_passwordless::Env::from_slice(&base)
}

/// Starts the identity endpoint on the listener from [`identity_env`], for `identity`.
pub async fn identity_endpoint(
    listener: std::net::TcpListener,
    header: &str,
    identity: &str,
) -> azure_passwordless::emulator::IdentityEndpoint {
    azure_passwordless::emulator::IdentityEndpoint::builder()
        .listener(listener)
        .header_secret(header)
        .identity_name(identity)
        .start()
        .await
        .unwrap()
}

/// Binds the identity endpoint's port and puts it, with `header`, into the process environment.
/// Call first thing in `main`, before any thread exists.
pub fn identity_env(header: &str, extra: &[(&str, &str)]) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    // SAFETY: no other thread exists yet; azure_identity reads these from the process.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", &url);
        std::env::set_var("IDENTITY_HEADER", header);
        for name in [
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_AUTHORITY_HOST",
            "AZURE_TOKEN_CREDENTIALS",
        ] {
            std::env::remove_var(name);
        }
        for (name, value) in extra {
            std::env::set_var(name, value);
        }
    }
    listener
}

/// Sends every crate's logs, at TRACE, into a buffer.
pub fn capture_logs() -> LogBuffer {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    logs
}

pub type TestFn<C> = for<'a> fn(&'a C) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

/// `[(name, fn)]` for the listed async test functions.
#[macro_export]
macro_rules! tests {
    ($ctx:ty: $($name:ident),* $(,)?) => {
        [$((stringify!($name), (|ctx| Box::pin($name(ctx))) as common::TestFn<$ctx>)),*]
    };
}

/// Runs the tests in order (those whose name contains the first non-flag argument, if given),
/// each isolated by `catch_unwind`; returns the names that failed.
pub async fn run<C>(ctx: &C, tests: &[(&'static str, TestFn<C>)]) -> Vec<&'static str> {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(ctx))).await;
        match outcome {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    failed
}

/// A multi-threaded runtime like `#[tokio::test(flavor = "multi_thread")]`'s.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Prints the summary and exits non-zero when anything failed.
pub fn finish(failed: Vec<&'static str>) {
    if failed.is_empty() {
        println!("\ntest result: ok");
    } else {
        println!("\ntest result: FAILED: {failed:?}");
        std::process::exit(1);
    }
}
