//! A validation or parse error tied to the field that caused it (`spec.http[0].route[1].weight`).

use std::fmt;

/// An error about one field of a resource, named by its path from the object root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Dotted path with list indices, e.g. `spec.http[0].match[1].uri`. Empty for the object itself.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Builds field paths while walking a spec, so validators never format paths by hand.
#[derive(Debug, Clone)]
pub struct Path(String);

impl Path {
    pub fn root(name: &str) -> Self {
        Self(name.to_string())
    }

    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() { Self(name.to_string()) } else { Self(format!("{}.{name}", self.0)) }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// A map key; quoted so keys containing dots stay readable.
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k:?}]", self.0))
    }

    pub fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.0.clone(), message)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
