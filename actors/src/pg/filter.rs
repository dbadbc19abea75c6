//! The result filter: the target side of policy. Masks values in rows,
//! COPY data and error texts before they reach the client and the
//! recording; the target and the query are unchanged.
//!
//! Column rules need names: RowDescription gives a table OID and column
//! number, resolved through the per-target [`Catalog`]. If the catalog
//! cannot be asked, every column a column rule could cover is masked
//! rather than guessed.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::BytesMut;

use super::catalog::{Catalog, TableInfo};
use super::codec::{self, CodecError};
use super::gate::SharedRef;
use super::messages;
use crate::gateway::PgTarget;
use crate::mask::{ColumnInfo, CopyFormat, CopyMasker, MaskStats, Masker, RowPlan};
use crate::policy::classify::ANY_COLUMN;
use crate::policy::copy_source::CopySource;
use crate::policy::tracker::Mentioned;

pub struct ResultFilter {
    masker: &'static Masker,
    catalog: Arc<Catalog>,
    target: PgTarget,
    shared: SharedRef,
    plan: Option<RowPlan>,
    /// The last plan made from a RowDescription, and what it was made of.
    last: Option<LastPlan>,
    copy: Option<CopyMasker<'static>>,
    stats: MaskStats,
}

/// Agents run the same statements over and over: the same RowDescription,
/// the same columns mentioned and the same catalog answers (the same
/// cached entries, compared by address and held here so no other entry
/// can take that address) make the same plan, so the last one is reused.
/// A catalog entry refreshed after its minute is a new entry: the plan is
/// made again. A plan made while the catalog could not name every table is
/// not kept.
struct LastPlan {
    description: Vec<u8>,
    mentioned: Mentioned,
    tables: Vec<(u32, Arc<TableInfo>)>,
    plan: RowPlan,
}

impl LastPlan {
    /// Made of this RowDescription and of catalog entries still current
    /// (the caller compares the columns mentioned).
    fn made_of(&self, description: &[u8], catalog: &Catalog) -> bool {
        self.description == description && catalog.still_current(&self.tables)
    }
}

/// A malformed frame from the target where masking needs to read it:
/// relaying it unread could leak, so the session ends.
#[derive(Debug)]
pub struct Unmaskable(pub String);

impl From<CodecError> for Unmaskable {
    fn from(e: CodecError) -> Self {
        Unmaskable(e.to_string())
    }
}

fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    codec::put_frame(&mut out, tag, body);
    out
}

impl ResultFilter {
    pub fn new(
        masker: &'static Masker,
        catalog: Arc<Catalog>,
        target: PgTarget,
        shared: SharedRef,
    ) -> Self {
        ResultFilter {
            masker,
            catalog,
            target,
            shared,
            plan: None,
            last: None,
            copy: None,
            stats: MaskStats::default(),
        }
    }

    /// A RowDescription: plan the result's masking (may ask the catalog).
    pub async fn describe(&mut self, body: &[u8]) -> Result<(), Unmaskable> {
        // The same statement again: its description, catalog entries and
        // columns mentioned are what the last plan was made of. Checked
        // before anything is parsed, looked up or built: this is every
        // repeated query's path.
        if let Some(last) = &self.last
            && last.made_of(body, &self.catalog)
            && self.shared.borrow().mentioned_is(&last.mentioned)
        {
            self.plan = Some(last.plan.clone());
            return Ok(());
        }
        let cols = messages::row_columns(body)?;
        let mut oids: Vec<u32> = cols
            .iter()
            .map(|c| c.table_oid)
            .filter(|o| *o != 0)
            .collect();
        oids.sort_unstable();
        oids.dedup();
        let tables = if self.masker.has_column_rules() && !oids.is_empty() {
            match self.catalog.by_oids(&self.target, &oids).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("masking without table names: {e}");
                    None
                }
            }
        } else {
            Some(Default::default())
        };
        let mut mentioned = self.shared.borrow().mentioned();
        let asked = tables.is_some().then(|| mentioned.clone());
        let infos: Vec<ColumnInfo> = cols
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.to_lowercase(),
                source: tables.as_ref().and_then(|t| {
                    let table = t.get(&c.table_oid)?;
                    // A view's column is computed from what the view reads.
                    if let Some(reads) = &table.view_reads {
                        mentioned.extend(reads.iter().map(|r| r.to_lowercase()));
                        return None;
                    }
                    Some((table.qualified(), table.column(c.attnum)?.to_owned()))
                }),
                binary: c.binary,
                type_oid: c.type_oid,
            })
            .collect();
        if tables.is_none() {
            // Unknown sources: treat every column as possibly any masked one.
            mentioned.insert(ANY_COLUMN.into());
        }
        let plan = self.masker.plan(&infos, &mentioned);
        // Kept for reuse only when the catalog knew every table: a table
        // it cannot see yet (created in the agent's open transaction) is
        // asked for again next time, and a plan with its names made then.
        let complete = |t: &std::collections::HashMap<u32, Arc<TableInfo>>| {
            !self.masker.has_column_rules() || oids.iter().all(|o| t.contains_key(o))
        };
        if let (Some(tables), Some(mentioned)) = (tables, asked)
            && complete(&tables)
        {
            self.last = Some(LastPlan {
                description: body.to_vec(),
                mentioned,
                tables: tables.into_iter().collect(),
                plan: plan.clone(),
            });
        }
        self.plan = Some(plan);
        Ok(())
    }

    /// NoData: the statement returns no rows.
    pub fn no_data(&mut self) {
        self.plan = None;
    }

    /// A DataRow: the replacement frame, if anything was masked.
    pub fn row(&mut self, body: &[u8]) -> Result<Option<BytesMut>, Unmaskable> {
        let Some(plan) = &self.plan else {
            // Rows without a description (a protocol error by the target):
            // detectors on every column.
            let plan = self.masker.plan(&[], &BTreeSet::new());
            return Ok(self
                .masker
                .mask_data_row(&plan, body, &mut self.stats)
                .map_err(|e| Unmaskable(format!("{e:?}")))?
                .map(|b| frame(b'D', &b)));
        };
        if plan.is_noop() {
            return Ok(None);
        }
        Ok(self
            .masker
            .mask_data_row(plan, body, &mut self.stats)
            .map_err(|e| Unmaskable(format!("{e:?}")))?
            .map(|b| frame(b'D', &b)))
    }

    /// CopyOutResponse: start masking the COPY stream.
    pub async fn copy_start(&mut self, body: &[u8]) -> Result<(), Unmaskable> {
        let (format, columns) = messages::copy_response(body)?;
        let source = self
            .shared
            .borrow_mut()
            .units
            .front_mut()
            .and_then(|u| u.copies.pop_front());
        let format = match (&source, format) {
            (_, 1) => CopyFormat::Binary,
            (Some(src), _) => src.format.to_format(),
            // A COPY the gateway did not see announced (extended protocol):
            // text format is PostgreSQL's default.
            (None, _) => CopyFormat::Text {
                delimiter: b'\t',
                null: b"\\N".to_vec(),
            },
        };
        let plan = self.copy_plan(source, columns.len()).await;
        self.copy = Some(CopyMasker::new(self.masker, plan, format));
        Ok(())
    }

    /// The plan for a COPY's columns, by position.
    async fn copy_plan(&mut self, source: Option<CopySource>, n: usize) -> RowPlan {
        let mut mentioned: BTreeSet<String> = BTreeSet::new();
        let mut infos: Vec<ColumnInfo> = Vec::new();
        match source {
            Some(src) if self.masker.has_column_rules() => {
                mentioned.extend(src.mentioned.iter().cloned());
                let names: Vec<(String, Option<(String, String)>)> = if !src.columns.is_empty() {
                    src.columns
                        .iter()
                        .map(|c| (c.clone(), src.table.clone().map(|t| (t, c.clone()))))
                        .collect()
                } else if let Some(table) = &src.table {
                    match self.catalog.by_name(&self.target, table).await {
                        // One candidate: exact. Several (unqualified name
                        // in more than one schema): give up precision.
                        Ok(cands) if cands.len() == 1 => cands[0]
                            .columns
                            .iter()
                            .map(|(_, c)| (c.clone(), Some((cands[0].qualified(), c.clone()))))
                            .collect(),
                        _ => {
                            mentioned.insert(ANY_COLUMN.into());
                            Vec::new()
                        }
                    }
                } else {
                    Vec::new()
                };
                for (name, source) in names {
                    infos.push(ColumnInfo {
                        name,
                        source,
                        binary: false,
                        type_oid: 0,
                    });
                }
            }
            Some(_) => {}
            None => {
                mentioned.insert(ANY_COLUMN.into());
            }
        }
        // Positions the statement does not name are computed values.
        while infos.len() < n {
            infos.push(ColumnInfo {
                name: String::new(),
                source: None,
                binary: false,
                type_oid: 0,
            });
        }
        self.masker.plan(&infos, &mentioned)
    }

    /// CopyData: the bytes to send instead (possibly empty while a row is
    /// incomplete), or `None` outside a masked COPY.
    pub fn copy_data(&mut self, body: &[u8]) -> Result<Option<BytesMut>, Unmaskable> {
        let Some(copy) = self.copy.as_mut() else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(body.len());
        copy.feed(body, &mut out, &mut self.stats)
            .map_err(|e| Unmaskable(format!("{e:?}")))?;
        Ok(Some(if out.is_empty() {
            BytesMut::new()
        } else {
            frame(b'd', &out)
        }))
    }

    /// CopyDone (or the COPY failing): what is left of the stream.
    pub fn copy_done(&mut self) -> Result<Option<BytesMut>, Unmaskable> {
        let Some(mut copy) = self.copy.take() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        copy.finish(&mut out, &mut self.stats)
            .map_err(|e| Unmaskable(format!("{e:?}")))?;
        Ok((!out.is_empty()).then(|| frame(b'd', &out)))
    }

    /// ErrorResponse/NoticeResponse: texts with values masked, among them
    /// what they echo of the client's statement ([`Masker::mask_echo`]).
    pub fn notice(&mut self, tag: u8, body: &[u8]) -> Result<Option<BytesMut>, Unmaskable> {
        let fields = messages::error_field_list(body)?;
        let sqlstate: &[u8] = fields
            .iter()
            .find(|(code, _)| *code == b'C')
            .map_or(b"", |(_, v)| v);
        let mut changed = false;
        let masked: Vec<(u8, Vec<u8>)> = fields
            .iter()
            .map(|(code, value)| match code {
                // Severity, SQLSTATE, positions, source file/line/routine:
                // never values.
                b'S' | b'V' | b'C' | b'P' | b'p' | b'F' | b'L' | b'R' => (*code, value.to_vec()),
                _ => {
                    // Detectors, then what the text quotes of the client's
                    // statement (over the detectors' result, so a value a
                    // detector knows stays masked its way).
                    let detected = self.masker.mask_text_bytes(value, &mut self.stats);
                    let text = detected.as_deref().unwrap_or(value);
                    let echo = self
                        .masker
                        .mask_echo(sqlstate, *code, text, &mut self.stats);
                    match echo.or(detected) {
                        Some(m) => {
                            changed = true;
                            (*code, m)
                        }
                        None => (*code, value.to_vec()),
                    }
                }
            })
            .collect();
        if !changed {
            return Ok(None);
        }
        let mut out = BytesMut::new();
        codec::put_fields(&mut out, tag, &masked);
        Ok(Some(out))
    }

    /// NotificationResponse: the payload masked as text.
    pub fn notification(&mut self, body: &[u8]) -> Result<Option<BytesMut>, Unmaskable> {
        let (pid, channel, payload) = messages::notification(body)?;
        let Some(masked) = self.masker.mask_text(payload, &mut self.stats) else {
            return Ok(None);
        };
        let mut inner = BytesMut::new();
        inner.extend_from_slice(&pid.to_be_bytes());
        inner.extend_from_slice(channel.as_bytes());
        inner.extend_from_slice(&[0]);
        inner.extend_from_slice(masked.replace('\0', "").as_bytes());
        inner.extend_from_slice(&[0]);
        Ok(Some(frame(b'A', &inner)))
    }

    /// ParameterStatus: the value masked as text.
    pub fn parameter_status(&mut self, body: &[u8]) -> Result<Option<BytesMut>, Unmaskable> {
        let (name, value) = messages::parameter_status(body)?;
        let Some(masked) = self.masker.mask_text(value, &mut self.stats) else {
            return Ok(None);
        };
        let mut inner = BytesMut::new();
        inner.extend_from_slice(name.as_bytes());
        inner.extend_from_slice(&[0]);
        inner.extend_from_slice(masked.replace('\0', "").as_bytes());
        inner.extend_from_slice(&[0]);
        Ok(Some(frame(b'S', &inner)))
    }

    /// CommandComplete or the end of a result: the summary to record.
    pub fn complete(&mut self) -> Option<Vec<(String, String, u64)>> {
        self.plan = None;
        (!self.stats.is_empty()).then(|| self.stats.take())
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::test_table as table;
    use super::*;

    /// The last plan is reused for the same description and the catalog
    /// entries it was made of only: an entry refreshed after its minute (a
    /// table dropped and made again, columns renamed) is another
    /// allocation, even when it reads the same, and the plan is made again.
    #[test]
    fn the_last_plan_is_reused_for_the_same_catalog_entries_only() {
        let masker = Masker::new(Vec::new(), [0; 32]).unwrap();
        let entry = table();
        let last = LastPlan {
            description: b"description".to_vec(),
            mentioned: Mentioned::from(["email".to_owned()]),
            tables: vec![(16384, entry.clone())],
            plan: masker.default_plan(),
        };
        let catalog = Catalog::default();
        assert!(!last.made_of(b"description", &catalog), "never looked up");
        catalog.cache_entry(16384, entry, std::time::Instant::now());
        assert!(last.made_of(b"description", &catalog));
        assert!(!last.made_of(b"descriptioN", &catalog));
        catalog.cache_entry(16384, table(), std::time::Instant::now());
        assert!(!last.made_of(b"description", &catalog), "refreshed");
    }
}
