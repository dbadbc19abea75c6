//! Tokens, lexical checks, the depth bound and the statement loop, and the few statements read without sqlparser.

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::collector::{Collector, classify_statement};
use super::names::normalize_word;
use super::{
    HELPER_STACK_BASE, HELPER_STACK_PER_UNIT, INLINE_COMPLEXITY, MAX_COMPLEXITY, RECURSION_LIMIT,
    StatementInfo, Unparsed,
};

pub(super) fn classify_text(sql: &str, nesting: usize) -> Result<Vec<StatementInfo>, Unparsed> {
    classify_tokens(tokenize(sql)?, nesting)
}

pub(super) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, Unparsed> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| Unparsed(format!("sql parser error: {e}")))
}

/// Refuse tokens on which sqlparser's lexer and PostgreSQL's disagree about where a literal ends.
pub(super) fn check_lexical(tokens: &[TokenWithSpan]) -> Result<(), Unparsed> {
    for t in tokens {
        match &t.token {
            Token::CopyData { .. } => {
                return Err(Unparsed(format!(
                    "inline COPY data is not SQL; send it with the COPY protocol instead{}",
                    t.span.start
                )));
            }
            Token::DollarQuotedString(d) => {
                if let Some(tag) = &d.tag
                    && !valid_dollar_tag(tag)
                {
                    return Err(Unparsed(format!(
                        "dollar-quote tag ${tag}$ is not valid in PostgreSQL{}",
                        t.span.start
                    )));
                }
            }
            // PostgreSQL ends B'...' and X'...' at the first quote and has no escapes in them; sqlparser reads
            // `''` (and in X'...' also `\'`) as an escaped quote and would see one literal where the server sees two.
            Token::HexStringLiteral(s) | Token::SingleQuotedByteStringLiteral(s)
                if s.contains(['\'', '\\']) =>
            {
                return Err(Unparsed(format!(
                    "ambiguous quote or backslash inside a B'...' or X'...' literal{}",
                    t.span.start
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// PostgreSQL: `$tag$` where tag = [A-Za-z\200-\377_][A-Za-z\200-\377_0-9]*.
fn valid_dollar_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        None => true,
        Some(c) if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
        }
        Some(_) => false,
    }
}

/// Upper bound (in tree levels, up to a constant factor) of how deep the AST built from `tokens` can be.
///
/// Within one bracket level, operators chain into a left-deep tree, but a comma always ends an expression, so the
/// chain length is bounded by the longest comma-separated segment. Nesting adds up along the path, and set
/// operations (`UNION` ...) chain across commas, so they are counted for the whole statement.
fn complexity(tokens: &[TokenWithSpan]) -> usize {
    struct Level {
        segment: usize,
        longest: usize,
        deepest_child: usize,
    }
    impl Level {
        fn value(&self) -> usize {
            self.segment.max(self.longest) + self.deepest_child
        }
    }
    let new_level = || Level {
        segment: 0,
        longest: 0,
        deepest_child: 0,
    };
    let mut worst = 0usize;
    let mut set_ops = 0usize;
    let mut stack = vec![new_level()];
    let fold = |stack: &mut Vec<Level>| {
        if let Some(done) = stack.pop() {
            let v = done.value();
            if let Some(parent) = stack.last_mut() {
                parent.deepest_child = parent.deepest_child.max(v);
            }
        }
    };
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => {}
            Token::SemiColon if stack.len() == 1 => {
                worst = worst.max(stack[0].value() + set_ops);
                stack[0] = new_level();
                set_ops = 0;
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                if let Some(top) = stack.last_mut() {
                    top.segment += 1;
                }
                stack.push(new_level());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if stack.len() > 1 {
                    fold(&mut stack);
                } else {
                    stack[0].segment += 1;
                }
            }
            Token::Comma => {
                if let Some(top) = stack.last_mut() {
                    top.longest = top.longest.max(top.segment);
                    top.segment = 0;
                }
            }
            other => {
                if word_in(other, &["UNION", "INTERSECT", "EXCEPT", "MINUS"]) {
                    set_ops += 1;
                }
                if let Some(top) = stack.last_mut() {
                    top.segment += 1;
                }
            }
        }
    }
    while stack.len() > 1 {
        fold(&mut stack);
    }
    worst.max(stack[0].value() + set_ops)
}

pub(super) fn classify_tokens(
    tokens: Vec<TokenWithSpan>,
    nesting: usize,
) -> Result<Vec<StatementInfo>, Unparsed> {
    bounded(tokens, move |tokens| parse_all(tokens, nesting))
}

/// Run `parse` over `tokens` within the resource limits (module docs): refused beyond [`MAX_COMPLEXITY`], on a
/// helper thread with a stack sized for the tree beyond [`INLINE_COMPLEXITY`].
pub(super) fn bounded<R: Send + 'static>(
    mut tokens: Vec<TokenWithSpan>,
    parse: impl FnOnce(Vec<TokenWithSpan>) -> Result<R, Unparsed> + Send + 'static,
) -> Result<R, Unparsed> {
    check_lexical(&tokens)?;
    let bound = complexity(&tokens);
    if bound > MAX_COMPLEXITY {
        return Err(Unparsed(format!(
            "statement too complex to check (nesting/operator bound {bound} > {MAX_COMPLEXITY})"
        )));
    }
    rewrite_create_procedure(&mut tokens);
    if bound <= INLINE_COMPLEXITY {
        return parse(tokens);
    }
    let stack = HELPER_STACK_BASE + bound * HELPER_STACK_PER_UNIT;
    let spawned = std::thread::Builder::new()
        .name("gatehouse-classify".into())
        .stack_size(stack)
        .spawn(move || parse(tokens));
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| {
            Err(Unparsed(
                "internal error while classifying a complex statement".into(),
            ))
        }),
        Err(_) => Err(Unparsed(
            "statement too complex to check (no helper thread available)".into(),
        )),
    }
}

/// sqlparser 0.64 only knows MS SQL's `CREATE PROCEDURE`; PostgreSQL's shares the `CREATE FUNCTION` syntax (minus
/// `RETURNS`), so `CREATE [OR REPLACE] PROCEDURE` is parsed as a function. Both classify as create/create_function.
fn rewrite_create_procedure(tokens: &mut [TokenWithSpan]) {
    let sig: Vec<usize> = significant(tokens);
    for (k, &i) in sig.iter().enumerate() {
        if !word_is(&tokens[i].token, "CREATE") {
            continue;
        }
        let mut j = k + 1;
        if sig.get(j).is_some_and(|&x| word_is(&tokens[x].token, "OR"))
            && sig
                .get(j + 1)
                .is_some_and(|&x| word_is(&tokens[x].token, "REPLACE"))
        {
            j += 2;
        }
        if let Some(&p) = sig.get(j)
            && word_is(&tokens[p].token, "PROCEDURE")
        {
            tokens[p].token = Token::make_keyword("FUNCTION");
        }
    }
}

pub(super) fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect()
}

fn parse_all(tokens: Vec<TokenWithSpan>, nesting: usize) -> Result<Vec<StatementInfo>, Unparsed> {
    let renames: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| word_is(&t.token, "RENAME"))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    each_statement(tokens, nesting, |read| {
        out.push(match read {
            Read::Special(info) => info,
            Read::Tree(statement, tokens) => {
                let first_rename = renames.partition_point(|&i| i < tokens.start);
                let renamed = renames.get(first_rename).is_some_and(|&i| i < tokens.end);
                classify_statement(&statement, renamed, nesting)
            }
        })
    })?;
    Ok(out)
}

/// One top-level statement as [`each_statement`] read it.
pub(super) enum Read {
    /// One sqlparser cannot parse, read by [`special_statement`].
    Special(StatementInfo),
    /// sqlparser's tree, and the range of tokens it was parsed from.
    Tree(Box<Statement>, std::ops::Range<usize>),
}

/// Read every top-level statement of `tokens` in order, giving each to
/// `each`; a statement not followed by `;` or the end is an error.
pub(super) fn each_statement(
    tokens: Vec<TokenWithSpan>,
    nesting: usize,
    mut each: impl FnMut(Read),
) -> Result<(), Unparsed> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            return Ok(());
        }
        let start = parser.index();
        let read = match special_statement(&mut parser, nesting)? {
            Some(info) => Read::Special(info),
            None => {
                let statement = parser
                    .parse_statement()
                    .map_err(|e| Unparsed(e.to_string()))?;
                Read::Tree(Box::new(statement), start..parser.index())
            }
        };
        let next = parser.peek_token_ref();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return Err(Unparsed(format!(
                "sql parser error: Expected: end of statement, found: {}{}",
                next.token, next.span.start
            )));
        }
        each(read);
    }
}

/// Statements sqlparser 0.64 cannot parse but that are simple enough to read here.
fn special_statement(
    parser: &mut Parser,
    nesting: usize,
) -> Result<Option<StatementInfo>, Unparsed> {
    let first = parser.peek_nth_token_ref(0).token.clone();
    let second = parser.peek_nth_token_ref(1).token.clone();
    let third = parser.peek_nth_token_ref(2).token.clone();
    let mut info = StatementInfo::default();
    if word_is(&first, "DO") {
        parser.next_token();
        let (language, body) = parse_do_arguments(parser)?;
        info.kinds.insert("do");
        let language = language.unwrap_or_else(|| "plpgsql".to_string());
        let mut c = Collector::new(nesting);
        c.scan_body(&body, &language, "DO block");
        info.absorb(c.info);
        info.kinds.insert("do");
        return Ok(Some(info));
    }
    let two_words = |a: &str, b: &str| word_is(&first, a) && word_is(&second, b);
    // (`PREPARE transaction AS ...` prepares a statement named "transaction": left to sqlparser.)
    if (two_words("PREPARE", "TRANSACTION")
        || two_words("COMMIT", "PREPARED")
        || two_words("ROLLBACK", "PREPARED"))
        && string_literal(&third).is_some()
    {
        parser.next_token();
        parser.next_token();
        parser.next_token();
        info.kinds.insert("transaction");
        return Ok(Some(info));
    }
    if word_is(&first, "CHECKPOINT") {
        parser.next_token();
        info.kinds.insert("other");
        return Ok(Some(info));
    }
    Ok(None)
}

/// `DO [LANGUAGE lang] code [LANGUAGE lang]`, after the `DO` keyword.
fn parse_do_arguments(parser: &mut Parser) -> Result<(Option<String>, String), Unparsed> {
    let mut language = None;
    let mut body = None;
    loop {
        let t = parser.peek_token_ref().clone();
        if matches!(t.token, Token::SemiColon | Token::EOF) {
            break;
        }
        if word_is(&t.token, "LANGUAGE") && language.is_none() {
            parser.next_token();
            let l = parser.next_token();
            language = match &l.token {
                Token::Word(w) => Some(normalize_word(&w.value, w.quote_style.is_some())),
                other => string_literal(other).map(|s| s.to_ascii_lowercase()),
            };
            if language.is_none() {
                return Err(Unparsed(format!(
                    "sql parser error: Expected: language name, found: {}{}",
                    l.token, l.span.start
                )));
            }
            continue;
        }
        match string_literal(&t.token) {
            Some(s) if body.is_none() => {
                parser.next_token();
                body = Some(s);
            }
            _ => {
                return Err(Unparsed(format!(
                    "sql parser error: Expected: DO code string or LANGUAGE, found: {}{}",
                    t.token, t.span.start
                )));
            }
        }
    }
    match body {
        Some(b) => Ok((language, b)),
        None => Err(Unparsed(
            "sql parser error: Expected: DO code string".into(),
        )),
    }
}

fn string_literal(t: &Token) -> Option<String> {
    match t {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some(s.clone()),
        Token::DollarQuotedString(d) => Some(d.value.clone()),
        _ => None,
    }
}

pub(super) fn word_is(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

pub(crate) fn word_in(t: &Token, kws: &[&str]) -> bool {
    kws.iter().any(|k| word_is(t, k))
}
