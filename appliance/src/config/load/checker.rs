//! `Checker`: collects problems and warnings, each with the file and line
//! it is about; resolves paths against the config file's folder and parses
//! durations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::parse_duration;

pub(in crate::config) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) base: PathBuf,
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Checker<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    pub(in crate::config) fn problem<T>(&mut self, at: &Spanned<T>, what: impl fmt::Display) {
        let line = self.line(at.span());
        self.problems
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    pub(in crate::config) fn problem_at(&mut self, line: usize, what: impl fmt::Display) {
        self.problems
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    pub(in crate::config) fn warn<T>(&mut self, at: &Spanned<T>, what: impl fmt::Display) {
        let line = self.line(at.span());
        self.warnings
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    pub(in crate::config) fn existing_file(
        &mut self,
        at: &Spanned<PathBuf>,
        what: &str,
    ) -> Option<PathBuf> {
        let path = self.resolve(at.get_ref());
        if path.is_file() {
            Some(path)
        } else {
            self.problem(
                at,
                format!(
                    "{what} {} does not exist (paths are relative to the config file)",
                    path.display()
                ),
            );
            None
        }
    }

    pub(in crate::config) fn duration(
        &mut self,
        at: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match at {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(s, format!("{key}: {e}"));
                    default
                }
            },
        }
    }
}
