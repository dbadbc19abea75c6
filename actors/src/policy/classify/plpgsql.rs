//! A small scanner for PL/pgSQL bodies: it finds the SQL statements, queries and expressions in them and
//! classifies those; whatever it does not recognise makes the body opaque.

use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Whitespace};

use super::StatementInfo;
use super::lexical::{check_lexical, classify_tokens, significant, tokenize, word_in, word_is};

/// Words that start a query; seeing one where only an expression was expected means a subquery.
const QUERY_WORDS: &[&str] = &[
    "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE",
];
/// Words that start an SQL statement; in text read only lexically they make the body opaque.
const STATEMENT_WORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "VALUES",
    "TABLE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "COPY",
    "CALL",
    "DO",
    "SET",
    "RESET",
    "LOCK",
    "COMMENT",
    "PERFORM",
    "VACUUM",
    "ANALYZE",
    "CLUSTER",
    "REINDEX",
    "REFRESH",
    "IMPORT",
    "SECURITY",
    "LISTEN",
    "NOTIFY",
    "LOAD",
    "DISCARD",
    "PREPARE",
    "DEALLOCATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "EXPLAIN",
    "REASSIGN",
    "CHECKPOINT",
];
/// Words that cannot be a plpgsql `INTO` target (they continue the SQL statement).
const NOT_TARGETS: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "WINDOW",
    "FOR",
    "RETURNING",
    "ON",
    "USING",
    "VALUES",
    "SELECT",
    "FETCH",
    "INTO",
    "STRICT",
];
/// Words followed by `(` that are syntax, not function calls.
const NOT_FUNCTIONS: &[&str] = &[
    "IN",
    "VALUES",
    "AND",
    "OR",
    "NOT",
    "EXISTS",
    "ANY",
    "ALL",
    "SOME",
    "ARRAY",
    "ROW",
    "WHEN",
    "THEN",
    "ELSE",
    "IF",
    "ELSIF",
    "ELSEIF",
    "WHILE",
    "RETURN",
    "USING",
    "ON",
    "AS",
    "FROM",
    "WHERE",
    "SELECT",
    "INTO",
    "JOIN",
    "LOOP",
    "BEGIN",
    "END",
    "CASE",
    "RAISE",
    "PERFORM",
    "NEXT",
    "QUERY",
    "ASSERT",
    "BY",
    "FOR",
    "IS",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "DISTINCT",
    "OVER",
    "FILTER",
    "WITHIN",
    "GROUP",
    "ORDER",
    "PARTITION",
    "CAST",
];

struct Scanner<'a> {
    toks: &'a [TokenWithSpan],
    sig: &'a [usize],
    nesting: usize,
    info: &'a mut StatementInfo,
    in_declare: bool,
}

pub(super) fn scan(body: &str, nesting: usize, info: &mut StatementInfo) {
    let toks = match tokenize(body) {
        Ok(t) => t,
        Err(e) => {
            info.set_opaque(format!("plpgsql body could not be tokenized: {}", e.0));
            return;
        }
    };
    if let Err(e) = check_lexical(&toks) {
        info.set_opaque(format!("plpgsql body: {}", e.0));
        return;
    }
    let sig = significant(&toks);
    if sig.iter().any(|&i| word_is(&toks[i].token, "EXECUTE")) {
        info.set_opaque("dynamic SQL (EXECUTE) in plpgsql body");
        return;
    }
    let mut s = Scanner {
        toks: &toks,
        sig: &sig,
        nesting,
        info,
        in_declare: false,
    };
    // Split into plpgsql statements at `;` outside brackets.
    let mut depth = 0usize;
    let mut start = 0usize;
    for k in 0..sig.len() {
        match &toks[sig[k]].token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                s.statement(start, k);
                start = k + 1;
            }
            _ => {}
        }
    }
    s.statement(start, sig.len());
}

impl Scanner<'_> {
    fn tok(&self, k: usize) -> &Token {
        self.sig
            .get(k)
            .map_or(&Token::EOF, |&i| &self.toks[i].token)
    }

    fn is(&self, k: usize, w: &str) -> bool {
        word_is(self.tok(k), w)
    }

    /// First position in `from..end` holding one of `words`, outside brackets and SQL `CASE ... END`.
    fn find(&self, from: usize, end: usize, words: &[&str]) -> Option<usize> {
        let mut depth = 0usize;
        let mut case_depth = 0usize;
        for k in from..end {
            let t = self.tok(k);
            match t {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                _ if depth > 0 => {}
                _ if word_is(t, "CASE") => case_depth += 1,
                _ if word_is(t, "END") && case_depth > 0 => case_depth -= 1,
                _ if case_depth == 0 && word_in(t, words) => return Some(k),
                _ => {}
            }
        }
        None
    }

    fn opaque(&mut self, why: &str) {
        self.info.set_opaque(format!("plpgsql body: {why}"));
    }

    /// One plpgsql statement: significant positions `k..end`.
    fn statement(&mut self, mut k: usize, end: usize) {
        loop {
            if k >= end {
                return;
            }
            // `<<label>>`
            if matches!(self.tok(k), Token::ShiftLeft) {
                k += 3;
                continue;
            }
            // `#option value` compiler directives.
            if matches!(self.tok(k), Token::Sharp) {
                k += 3;
                continue;
            }
            if self.in_declare && !self.is(k, "BEGIN") {
                self.declaration(k, end);
                return;
            }
            if let Some(rhs) = self.assignment(k, end) {
                self.expression(rhs, end);
                return;
            }
            let t = self.tok(k).clone();
            let w = |s: &str| word_is(&t, s);
            if w("DECLARE") {
                self.in_declare = true;
                k += 1;
            } else if w("BEGIN") {
                self.in_declare = false;
                k += 1;
            } else if w("EXCEPTION") || w("ELSE") || w("LOOP") {
                k += 1;
            } else if w("END") || w("NULL") {
                // `END [IF | LOOP | CASE] [label]`, `NULL`: anything longer is not plpgsql.
                if end - k > 3 {
                    self.opaque("unexpected text after END/NULL");
                }
                return;
            } else if w("GET") {
                self.lexical(k + 1, end);
                return;
            } else if w("IF") || w("ELSIF") || w("ELSEIF") || w("WHEN") {
                match self.find(k + 1, end, &["THEN"]) {
                    Some(then) => {
                        self.expression(k + 1, then);
                        k = then + 1;
                    }
                    None => return self.opaque("condition without THEN"),
                }
            } else if w("CASE") {
                match self.find(k + 1, end, &["WHEN"]) {
                    Some(when) => {
                        self.expression(k + 1, when);
                        k = when;
                    }
                    None => return self.opaque("CASE without WHEN"),
                }
            } else if w("WHILE") {
                match self.find(k + 1, end, &["LOOP"]) {
                    Some(l) => {
                        self.expression(k + 1, l);
                        k = l + 1;
                    }
                    None => return self.opaque("WHILE without LOOP"),
                }
            } else if w("FOR") || w("FOREACH") {
                let (Some(i), Some(l)) = (
                    self.find(k + 1, end, &["IN"]),
                    self.find(k + 1, end, &["LOOP"]),
                ) else {
                    return self.opaque("FOR without IN ... LOOP");
                };
                if i > l {
                    return self.opaque("FOR without IN ... LOOP");
                }
                let mut from = i + 1;
                if self.is(from, "REVERSE") || self.is(from, "ARRAY") {
                    from += 1;
                }
                if self.starts_query(from) {
                    self.sql(from, l, false);
                } else {
                    self.lexical(from, l);
                }
                k = l + 1;
            } else if w("EXIT") || w("CONTINUE") {
                if let Some(when) = self.find(k + 1, end, &["WHEN"]) {
                    self.expression(when + 1, end);
                }
                return;
            } else if w("RETURN") {
                if self.is(k + 1, "QUERY") {
                    self.sql(k + 2, end, false);
                } else if self.is(k + 1, "NEXT") {
                    self.expression(k + 2, end);
                } else {
                    self.expression(k + 1, end);
                }
                return;
            } else if w("ASSERT") {
                self.expression(k + 1, end);
                return;
            } else if w("RAISE") || w("FETCH") || w("MOVE") || w("CLOSE") {
                self.lexical(k + 1, end);
                return;
            } else if w("OPEN") {
                match self.find(k + 1, end, &["FOR"]) {
                    Some(f) => self.sql(f + 1, end, false),
                    None => self.lexical(k + 1, end),
                }
                return;
            } else if w("PERFORM") {
                self.sql(k, end, true);
                return;
            } else {
                self.sql(k, end, false);
                return;
            }
        }
    }

    /// `target := expr` / `target = expr` → position of `expr`.
    fn assignment(&self, k: usize, end: usize) -> Option<usize> {
        if !matches!(self.tok(k), Token::Word(_)) {
            return None;
        }
        let mut j = k + 1;
        while j < end {
            match self.tok(j) {
                Token::Period if matches!(self.tok(j + 1), Token::Word(_)) => j += 2,
                Token::LBracket => {
                    let mut depth = 0usize;
                    while j < end {
                        match self.tok(j) {
                            Token::LBracket => depth += 1,
                            Token::RBracket => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    j += 1;
                }
                _ => break,
            }
        }
        match self.tok(j) {
            Token::Assignment | Token::Eq => Some(j + 1),
            Token::Colon if matches!(self.tok(j + 1), Token::Eq) => Some(j + 2),
            _ => None,
        }
    }

    fn declaration(&mut self, k: usize, end: usize) {
        if let Some(c) = self.find(k, end, &["CURSOR"]) {
            match self.find(c + 1, end, &["FOR", "IS"]) {
                Some(f) => self.sql(f + 1, end, false),
                None => self.opaque("cursor declaration without a query"),
            }
            return;
        }
        if word_in(self.tok(k), STATEMENT_WORDS) {
            // Not `name type ...`: a malformed section, or a statement; read it as one.
            return self.sql(k, end, false);
        }
        if self.find(k, end, &["ALIAS"]).is_some() {
            return;
        }
        let mut depth = 0usize;
        for j in k..end {
            if depth == 0 && word_in(self.tok(j), STATEMENT_WORDS) {
                return self.opaque("unrecognised declaration");
            }
            match self.tok(j) {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
                Token::Assignment | Token::Eq if depth == 0 => {
                    return self.expression(j + 1, end);
                }
                t if depth == 0 && word_is(t, "DEFAULT") => return self.expression(j + 1, end),
                _ => {}
            }
        }
    }

    fn starts_query(&self, k: usize) -> bool {
        let mut k = k;
        while matches!(self.tok(k), Token::LParen) {
            k += 1;
        }
        word_in(self.tok(k), QUERY_WORDS)
    }

    /// Original tokens (with whitespace) for significant positions `from..end`.
    fn slice(&self, from: usize, end: usize) -> Vec<TokenWithSpan> {
        if from >= end || from >= self.sig.len() {
            return Vec::new();
        }
        let last = self.sig[(end - 1).min(self.sig.len() - 1)];
        self.toks[self.sig[from]..=last].to_vec()
    }

    /// An SQL statement at `from..end`; `perform` = it starts with PERFORM, read as SELECT.
    fn sql(&mut self, from: usize, end: usize, perform: bool) {
        if from >= end {
            return self.opaque("missing SQL statement");
        }
        // plpgsql's `INTO [STRICT] target [, ...]` (not INSERT INTO / MERGE INTO) is stripped.
        let mut skip: Option<(usize, usize)> = None;
        let mut search = from;
        while let Some(into) = self.find(search, end, &["INTO"]) {
            search = into + 1;
            let after_insert = into > from && word_in(self.tok(into - 1), &["INSERT", "MERGE"]);
            if !after_insert {
                let mut j = into + 1;
                if self.is(j, "STRICT") {
                    j += 1;
                }
                loop {
                    if !matches!(self.tok(j), Token::Word(_)) || word_in(self.tok(j), NOT_TARGETS) {
                        break;
                    }
                    j += 1;
                    while matches!(self.tok(j), Token::Period)
                        && matches!(self.tok(j + 1), Token::Word(_))
                    {
                        j += 2;
                    }
                    if matches!(self.tok(j), Token::Comma)
                        && matches!(self.tok(j + 1), Token::Word(_))
                    {
                        j += 1;
                    } else {
                        break;
                    }
                }
                skip = Some((into, j.min(end)));
                break;
            }
        }
        let mut tokens = Vec::new();
        let mut k = from;
        while k < end {
            if let Some((a, b)) = skip
                && k == a
            {
                tokens.push(space());
                k = b;
                continue;
            }
            let mut piece = self.slice(k, k + 1);
            if k == from && perform {
                piece = vec![TokenWithSpan {
                    token: Token::make_keyword("SELECT"),
                    span: Span::empty(),
                }];
            }
            tokens.extend(piece);
            // keep the whitespace between significant tokens
            if k + 1 < end
                && let (Some(&i), Some(&n)) = (self.sig.get(k), self.sig.get(k + 1))
            {
                tokens.extend(self.toks[i + 1..n].iter().cloned());
            }
            k += 1;
        }
        match classify_tokens(tokens, self.nesting) {
            Ok(infos) => {
                for i in infos {
                    self.info.absorb(i);
                }
            }
            Err(e) => self.opaque(&format!("statement could not be parsed: {}", e.0)),
        }
    }

    /// A plpgsql expression at `from..end`, evaluated by the server as `SELECT <expr>`.
    fn expression(&mut self, from: usize, end: usize) {
        if from >= end {
            return;
        }
        let mut tokens = vec![
            TokenWithSpan {
                token: Token::make_keyword("SELECT"),
                span: Span::empty(),
            },
            space(),
        ];
        tokens.extend(self.slice(from, end));
        match classify_tokens(tokens, self.nesting) {
            Ok(infos) => {
                for mut i in infos {
                    if i.tables.is_empty() {
                        i.kinds.remove("select");
                    }
                    self.info.absorb(i);
                }
            }
            Err(_) => self.lexical(from, end),
        }
    }

    /// Tokens that are not SQL on their own: report `name(` as function calls; a query here is opaque.
    fn lexical(&mut self, from: usize, end: usize) {
        for k in from..end {
            let t = self.tok(k);
            if word_in(t, STATEMENT_WORDS) {
                return self.opaque("SQL inside a plpgsql expression could not be parsed");
            }
            if let Token::Word(w) = t
                && matches!(self.tok(k + 1), Token::LParen)
                && !(w.quote_style.is_none()
                    && NOT_FUNCTIONS
                        .iter()
                        .any(|n| w.value.eq_ignore_ascii_case(n)))
            {
                let mut parts = vec![super::names::normalize_word(
                    &w.value,
                    w.quote_style.is_some(),
                )];
                let mut j = k;
                while j >= from + 2 && matches!(self.tok(j - 1), Token::Period) {
                    if let Token::Word(q) = self.tok(j - 2) {
                        parts.insert(
                            0,
                            super::names::normalize_word(&q.value, q.quote_style.is_some()),
                        );
                        j -= 2;
                    } else {
                        break;
                    }
                }
                self.info.functions.insert(parts.join("."));
            }
        }
    }
}

fn space() -> TokenWithSpan {
    TokenWithSpan {
        token: Token::Whitespace(Whitespace::Space),
        span: Span::empty(),
    }
}
