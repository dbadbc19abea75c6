//! Code given as text: DO and function bodies, SQL strings given to dynamic-SQL functions, and other functions whose
//! string arguments matter (`set_config`, relation names in `nextval`, ...).

use sqlparser::ast::{CreateFunctionBody, Expr, ObjectName, Value};

use super::collector::Collector;
use super::lexical::classify_text;
use super::names::{last_part, name_from_string, norm_ident};
use super::plpgsql;
use super::{MAX_BODY_NESTING, StatementInfo, Unparsed};

impl Collector {
    /// Read a DO block or function body written in `language`.
    pub(super) fn scan_body(&mut self, body: &str, language: &str, what: &str) {
        if self.nesting >= MAX_BODY_NESTING {
            self.info
                .set_opaque(format!("{what} nested too deeply to read"));
            return;
        }
        match language {
            "sql" => match classify_text(body, self.nesting + 1) {
                Ok(infos) => {
                    for i in infos {
                        self.info.absorb(i);
                    }
                }
                Err(Unparsed(e)) => self
                    .info
                    .set_opaque(format!("{what} body could not be parsed: {e}")),
            },
            "plpgsql" => {
                let mut inner = StatementInfo::default();
                plpgsql::scan(body, self.nesting + 1, &mut inner);
                self.info.absorb(inner);
            }
            other => self.info.set_opaque(format!(
                "{what} is written in language {other}, which cannot be read"
            )),
        }
    }

    pub(super) fn create_function_body(&mut self, cf: &sqlparser::ast::CreateFunction) {
        let language = cf
            .language
            .as_ref()
            .map(norm_ident)
            .unwrap_or_else(|| "sql".to_string());
        match &cf.function_body {
            Some(CreateFunctionBody::AsBeforeOptions { body, link_symbol }) => {
                if link_symbol.is_some() {
                    self.info.set_opaque(format!(
                        "function is object code (language {language}), which cannot be read"
                    ));
                } else {
                    self.string_body(body, &language);
                }
            }
            Some(CreateFunctionBody::AsAfterOptions(body)) => self.string_body(body, &language),
            // SQL-standard bodies (RETURN expr, BEGIN ATOMIC ... END) are part of the AST and walked as such.
            _ => {}
        }
    }

    fn string_body(&mut self, body: &Expr, language: &str) {
        match expr_string(body) {
            Some(text) => self.scan_body(&text, language, "function"),
            None => self
                .info
                .set_opaque("function body is not a string literal"),
        }
    }

    /// Functions whose arguments need a closer look.
    pub(super) fn special_function(&mut self, name: &ObjectName, args: Vec<Option<&Expr>>) {
        let Some(base) = last_part(name) else { return };
        match base.as_str() {
            "dblink" | "dblink_exec" | "dblink_open" | "dblink_send_query" | "query_to_xml" | "query_to_xmlschema"
            | "query_to_xml_and_xmlschema" => {
                let mut read_any = false;
                let mut computed = false;
                for a in &args {
                    match a {
                        Some(e) => match expr_string(e) {
                            Some(text) => {
                                if self.nesting >= MAX_BODY_NESTING {
                                    continue;
                                }
                                if let Ok(infos) = classify_text(&text, self.nesting + 1) {
                                    if !infos.is_empty() {
                                        read_any = true;
                                    }
                                    for i in infos {
                                        self.info.absorb(i);
                                    }
                                }
                            }
                            None => {
                                if !matches!(e, Expr::Value(v) if matches!(v.value, Value::Boolean(_) | Value::Number(..)))
                                {
                                    computed = true;
                                }
                            }
                        },
                        None => computed = true,
                    }
                }
                if computed || !read_any {
                    self.info.set_opaque(format!("{base}() runs SQL that could not be read"));
                }
            }
            "set_config" => match args.first() {
                Some(Some(e)) => match expr_string(e) {
                    Some(name) if name.trim().eq_ignore_ascii_case("standard_conforming_strings") => self
                        .info
                        .set_opaque("set_config(standard_conforming_strings) changes how later SQL is lexed"),
                    Some(_) => {}
                    None => self.info.set_opaque("set_config() with a computed setting name"),
                },
                _ => self.info.set_opaque("set_config() with a computed setting name"),
            },
            "nextval" | "currval" | "setval" | "table_to_xml" | "table_to_xmlschema" | "table_to_xml_and_xmlschema" => {
                if let Some(Some(e)) = args.first()
                    && let Some(s) = expr_string(e) {
                        self.table_str(name_from_string(&s));
                    }
            }
            _ => {}
        }
    }
}

pub(super) fn expr_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            _ => None,
        },
        Expr::Nested(inner) => expr_string(inner),
        Expr::Cast { expr, .. } => expr_string(expr),
        _ => None,
    }
}
