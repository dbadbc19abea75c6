//! Which column rule covers a value: one written to a named column, any
//! column of a table, or (its column unknown) the first column rule.

use super::sites::Written;
use crate::mask::Masker;

impl Masker {
    /// The rule of a value that goes to `w`: its column's, or for an
    /// INSERT whose values cannot be matched to columns (no column named),
    /// any rule for its table.
    pub(super) fn column_rule(&self, w: &Written) -> Option<u32> {
        match &w.column[..] {
            "" => w.table.as_deref().and_then(|t| self.any_rule_for_table(t)),
            _ => self.written_rule(w),
        }
    }

    /// The first column rule that covers a value written to `w`.
    pub(super) fn written_rule(&self, w: &Written) -> Option<u32> {
        let column = w.column.to_lowercase();
        let table = w.table.as_ref().map(|t| t.to_lowercase());
        let (schema, table) = match table.as_deref().map(|t| t.rsplit_once('.')) {
            Some(Some((s, t))) => (Some(s), Some(t)),
            Some(None) => (None, table.as_deref()),
            None => (None, None),
        };
        self.rules
            .iter()
            .position(|r| {
                r.columns.iter().any(|p| {
                    p.column == column
                        && match (&p.table, table) {
                            (Some(pt), Some(t)) => {
                                pt == t
                                    && match (&p.schema, schema) {
                                        (Some(ps), Some(s)) => ps == s,
                                        _ => true,
                                    }
                            }
                            _ => true,
                        }
                })
            })
            .map(|i| i as u32)
    }

    /// The first column rule that could cover some column of `table` (for
    /// an INSERT whose values cannot be matched to columns).
    pub(super) fn any_rule_for_table(&self, table: &str) -> Option<u32> {
        let table = table.to_lowercase();
        let name = table.rsplit('.').next().unwrap_or(&table);
        self.rules
            .iter()
            .position(|r| {
                r.columns
                    .iter()
                    .any(|p| p.table.as_deref().is_none_or(|t| t == name))
            })
            .map(|i| i as u32)
    }

    /// The first rule with columns: what masks a value whose column is
    /// unknown.
    pub(super) fn first_column_rule(&self) -> Option<u32> {
        self.rules
            .iter()
            .position(|r| !r.columns.is_empty())
            .map(|i| i as u32)
    }
}
