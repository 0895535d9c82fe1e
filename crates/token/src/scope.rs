//! Scopes as RFC 6749 section 3.3 defines them: space-delimited, case-sensitive tokens.

use std::collections::BTreeSet;

/// Longest scope string accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 4096;

/// A set of scope tokens, kept sorted so output is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

/// Why a scope string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is too long")]
    TooLong,
    #[error("scope contains a character RFC 6749 does not allow")]
    BadCharacter,
}

impl Scopes {
    /// Parses a space-delimited scope string. Empty parts (double spaces) are ignored.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong);
        }
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(ScopeError::BadCharacter);
            }
            set.insert(token.to_owned());
        }
        Ok(Scopes(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.union(&other.0).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// `Scopes::from_iter(["a", "b"])`, or `.collect()` into `Scopes`.
impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Scopes(iter.into_iter().map(Into::into).collect())
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sorted_without_duplicates() {
        let s = Scopes::parse("b a  b c").unwrap();
        assert_eq!(s.to_string(), "a b c");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn refuses_quotes_backslashes_and_control_characters() {
        assert_eq!(Scopes::parse("a\"b"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("a\\b"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("a\tb"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("é"), Err(ScopeError::BadCharacter));
    }

    #[test]
    fn refuses_oversized_scope_strings() {
        assert_eq!(
            Scopes::parse(&"a".repeat(MAX_SCOPE_LEN + 1)),
            Err(ScopeError::TooLong)
        );
    }

    #[test]
    fn subset_and_intersection() {
        let all = Scopes::parse("a b c").unwrap();
        let some = Scopes::parse("a c").unwrap();
        assert!(some.is_subset(&all));
        assert!(!all.is_subset(&some));
        assert_eq!(
            all.intersection(&Scopes::parse("c d").unwrap()).to_string(),
            "c"
        );
    }
}
