//! The environment, injected: process variables or a fixed map.

use std::{collections::BTreeMap, fmt, sync::Arc};

/// Where settings come from: the process environment, or a fixed set of pairs.
///
/// Every `from_env` in this crate reads through an `Env`, so tests never call
/// `std::env::set_var`. The `Debug` output lists variable names only, never values.
///
/// # Examples
/// ```
/// use azure_passwordless::Env;
///
/// let env = Env::from_slice(&[("DBHOST", "localhost"), ("DBNAME", "restaurants")]);
/// assert_eq!(env.get("DBHOST").as_deref(), Some("localhost"));
/// assert_eq!(env.get("DBUSER"), None);
/// ```
#[derive(Clone, Default)]
pub struct Env(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    Process,
    Fixed(Arc<BTreeMap<String, String>>),
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self(Source::Process)
    }

    /// A fixed environment holding exactly these pairs.
    pub fn from_slice(pairs: &[(&str, &str)]) -> Self {
        Self(Source::Fixed(Arc::new(
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        )))
    }

    /// The value of `name`, or `None` when it is unset, empty, or whitespace only.
    ///
    /// An empty value counts as unset because App Service and shells commonly leave
    /// variables defined but blank. A value that is not valid Unicode also reads as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.0 {
            Source::Process => std::env::var(name).ok(),
            Source::Fixed(map) => map.get(name).cloned(),
        }?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.len() == value.len() {
            Some(value)
        } else {
            Some(trimmed.to_owned())
        }
    }

    /// `true` when `name` has a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Process => f.write_str("Env::Process"),
            // Names only: values may be secrets.
            Source::Fixed(map) => f
                .debug_tuple("Env::Fixed")
                .field(&map.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_read_as_unset() {
        let env = Env::from_slice(&[("A", ""), ("B", "  "), ("C", " x ")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get("B"), None);
        assert_eq!(env.get("C").as_deref(), Some("x"));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Env::from_slice(&[("AZURE_CLIENT_SECRET", "hunter2")]);
        let text = format!("{env:?}");
        assert!(text.contains("AZURE_CLIENT_SECRET"));
        assert!(!text.contains("hunter2"));
    }
}
