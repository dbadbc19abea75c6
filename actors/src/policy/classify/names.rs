//! Normalisation: identifiers and names as PostgreSQL resolves them lexically (see the module docs).

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use sqlparser::tokenizer::Token;

use super::MAX_IDENTIFIER_BYTES;
use super::lexical::tokenize;

pub(super) fn normalize_word(value: &str, quoted: bool) -> String {
    let mut s = if quoted {
        value.to_string()
    } else {
        value.to_ascii_lowercase()
    };
    if s.len() > MAX_IDENTIFIER_BYTES {
        let mut n = MAX_IDENTIFIER_BYTES;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

pub(super) fn norm_ident(i: &Ident) -> String {
    normalize_word(&i.value, i.quote_style.is_some())
}

pub(super) fn norm_name(n: &ObjectName) -> String {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => norm_ident(i),
                other => other.to_string().to_ascii_lowercase(),
            })
            .collect();
    parts.join(".")
}

pub(super) fn last_part(n: &ObjectName) -> Option<String> {
    match n.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Some(norm_ident(i)),
        _ => None,
    }
}

/// A relation name given as a string (`'public.Foo'::regclass`, `nextval('s')`), read like PostgreSQL's regclassin.
pub(super) fn name_from_string(s: &str) -> String {
    if let Ok(tokens) = tokenize(s) {
        let sig: Vec<&Token> = tokens
            .iter()
            .map(|t| &t.token)
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let mut parts = Vec::new();
        let mut ok = !sig.is_empty();
        for (k, t) in sig.iter().enumerate() {
            match (k % 2, t) {
                (0, Token::Word(w)) => {
                    parts.push(normalize_word(&w.value, w.quote_style.is_some()))
                }
                (1, Token::Period) => {}
                _ => ok = false,
            }
        }
        if ok && sig.len() % 2 == 1 {
            return parts.join(".");
        }
    }
    s.to_ascii_lowercase()
}
