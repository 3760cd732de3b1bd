//! String and regex matchers shared by route matching and route policies (CORS origins). Pure.

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    Regex(RegexEq),
    Present,
}

/// A regex compared by its pattern (the `regex` crate's type has no equality).
#[derive(Debug, Clone)]
pub struct RegexEq(pub regex::Regex);

impl PartialEq for RegexEq {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for RegexEq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        regex_text(&self.0, s)
    }
}

impl std::ops::Deref for RegexEq {
    type Target = regex::Regex;
    fn deref(&self) -> &regex::Regex {
        &self.0
    }
}

pub(crate) fn regex_text<S: Serializer>(re: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    // Stored anchored (`^(?:..)$`) for full-string matching; shown as written.
    let text = re.as_str();
    s.serialize_str(text.strip_prefix("^(?:").and_then(|t| t.strip_suffix(")$")).unwrap_or(text))
}

impl StringMatcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (_, None) => false,
            (Self::Present, Some(_)) => true,
            (Self::Exact(e), Some(v)) => v == e,
            (Self::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Self::Regex(re), Some(v)) => re.is_match(v),
        }
    }
}
