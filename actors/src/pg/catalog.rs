//! Table names for result columns: RowDescription carries a table OID and
//! a column number, not names, and column masks are written with names
//! (`customers.ssn`). The catalog is asked over a short-lived connection of
//! the gateway's own (never on the agent's session, whose transaction state
//! is the agent's), and answers are cached per target for a minute — long
//! enough to make repeated queries free, short enough that a dropped and
//! recreated table is seen soon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, HEADER_LEN};
use super::messages;
use super::upstream;
use crate::error::SessionError;
use crate::gateway::PgTarget;

/// How long a cached table description is trusted.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Catalog answers are small; anything bigger is not a catalog answer.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// One table: its schema, name and columns by number.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    /// (attnum, name), in column order.
    pub columns: Vec<(i16, String)>,
    /// A view (or materialized view): the names of the base-table columns
    /// it reads, through nested views. A view column cannot be mapped to
    /// the column it shows, so masking treats the view's columns as
    /// computed from all of these.
    pub view_reads: Option<Vec<String>>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn column(&self, attnum: i16) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| *n == attnum)
            .map(|(_, c)| c.as_str())
    }
}

#[derive(Default)]
struct Cache {
    by_oid: HashMap<u32, (Instant, Arc<TableInfo>)>,
    by_name: HashMap<String, (Instant, Vec<Arc<TableInfo>>)>,
}

/// The per-target cache; cheap to share between sessions.
#[derive(Default)]
pub struct Catalog {
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

const COLUMNS_SQL: &str = "SELECT c.oid::int8, n.nspname, c.relname, a.attnum, a.attname, c.relkind \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND ";

impl Catalog {
    /// Tables by OID; unknown OIDs are looked up on the target. A lookup
    /// failure is an error: the caller masks conservatively instead.
    pub async fn by_oids(
        &self,
        target: &PgTarget,
        oids: &[u32],
    ) -> Result<HashMap<u32, Arc<TableInfo>>, SessionError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for &oid in oids {
                match cache.by_oid.get(&oid) {
                    Some((at, info)) if at.elapsed() < CACHE_TTL => {
                        found.insert(oid, info.clone());
                    }
                    _ if !missing.contains(&oid) => missing.push(oid),
                    _ => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let list = missing
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut tables = lookup(target, &format!("{COLUMNS_SQL}c.oid IN ({list})")).await?;
        let views: Vec<String> = tables
            .iter()
            .filter(|(_, t)| t.view_reads.is_some())
            .map(|(oid, _)| oid.to_string())
            .collect();
        if !views.is_empty() {
            let reads = lookup_rows(target, &view_reads_sql(&views.join(","))).await?;
            for row in reads {
                if let (Some(Ok(view)), Some(column)) =
                    (row.first().map(|v| v.parse::<u32>()), row.get(1))
                    && let Some(Some(list)) = tables.get_mut(&view).map(|t| t.view_reads.as_mut())
                {
                    list.push(column.clone());
                }
            }
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (oid, info) in tables {
            let info = Arc::new(info);
            cache.by_oid.insert(oid, (Instant::now(), info.clone()));
            found.insert(oid, info);
        }
        Ok(found)
    }

    /// Whether each entry of `tables` is still the one cached for its OID,
    /// within its minute: what [`Catalog::by_oids`] would answer for these
    /// OIDs now, without a lookup or a map built to say so.
    pub fn still_current(&self, tables: &[(u32, Arc<TableInfo>)]) -> bool {
        if tables.is_empty() {
            return true;
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        tables.iter().all(|(oid, table)| {
            cache
                .by_oid
                .get(oid)
                .is_some_and(|(at, info)| Arc::ptr_eq(table, info) && at.elapsed() < CACHE_TTL)
        })
    }

    /// Cache `info` as `oid`'s entry, fetched at `at` (tests).
    #[cfg(test)]
    pub(crate) fn cache_entry(&self, oid: u32, info: Arc<TableInfo>, at: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.by_oid.insert(oid, (at, info));
    }

    /// Tables called `name` (`table` or `schema.table`, as the classifier
    /// normalises them) in any schema when unqualified: which one the
    /// session's `search_path` picks is not known here, so callers take
    /// every candidate into account.
    pub async fn by_name(
        &self,
        target: &PgTarget,
        name: &str,
    ) -> Result<Vec<Arc<TableInfo>>, SessionError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, infos)) = cache.by_name.get(name)
                && at.elapsed() < CACHE_TTL
            {
                return Ok(infos.clone());
            }
        }
        let (schema, table) = match name.rsplit_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, name),
        };
        let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
        if name.contains('\\') || name.contains('\0') {
            return Ok(Vec::new());
        }
        let mut sql = format!("{COLUMNS_SQL}c.relname = {}", literal(table));
        if let Some(schema) = schema {
            sql.push_str(&format!(" AND n.nspname = {}", literal(schema)));
        }
        let infos: Vec<Arc<TableInfo>> = lookup(target, &sql)
            .await?
            .into_values()
            .map(Arc::new)
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .by_name
            .insert(name.to_owned(), (Instant::now(), infos.clone()));
        Ok(infos)
    }
}

/// The base-table columns each view reads, following views of views.
fn view_reads_sql(view_oids: &str) -> String {
    format!(
        "WITH RECURSIVE reads(view, rel, att) AS ( \
           SELECT r.ev_class, d.refobjid, d.refobjsubid FROM pg_catalog.pg_rewrite r \
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
           WHERE r.ev_class IN ({view_oids}) AND d.refobjsubid > 0 AND d.refobjid <> r.ev_class \
         UNION \
           SELECT reads.view, d.refobjid, d.refobjsubid FROM reads \
           JOIN pg_catalog.pg_rewrite r ON r.ev_class = reads.rel \
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
           WHERE d.refobjsubid > 0 AND d.refobjid <> r.ev_class) \
         SELECT DISTINCT reads.view::int8, a.attname FROM reads \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = reads.rel AND a.attnum = reads.att"
    )
}

/// A catalog answer that takes longer than this is given up on (results are
/// then masked conservatively) rather than stalling the session.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Run one catalog query on a fresh connection and group its rows.
async fn lookup(target: &PgTarget, sql: &str) -> Result<HashMap<u32, TableInfo>, SessionError> {
    let mut tables: HashMap<u32, TableInfo> = HashMap::new();
    for row in lookup_rows(target, sql).await? {
        let text = |i: usize| row.get(i).cloned().unwrap_or_default();
        let (Ok(oid), Ok(attnum)) = (text(0).parse::<u32>(), text(3).parse::<i16>()) else {
            return Err(SessionError::TargetFailed {
                connection: target.name.clone(),
                detail: "catalog lookup: unexpected row".into(),
            });
        };
        tables
            .entry(oid)
            .or_insert_with(|| TableInfo {
                schema: text(1),
                table: text(2),
                columns: Vec::new(),
                view_reads: matches!(text(5).as_str(), "v" | "m").then(Vec::new),
            })
            .columns
            .push((attnum, text(4)));
    }
    for t in tables.values_mut() {
        t.columns.sort_by_key(|(n, _)| *n);
    }
    Ok(tables)
}

/// Run one catalog query on a fresh connection: its rows as text.
async fn lookup_rows(target: &PgTarget, sql: &str) -> Result<Vec<Vec<String>>, SessionError> {
    tokio::time::timeout(LOOKUP_TIMEOUT, lookup_inner(target, sql))
        .await
        .unwrap_or_else(|_| {
            Err(SessionError::TargetFailed {
                connection: target.name.clone(),
                detail: format!("catalog lookup: no answer within {LOOKUP_TIMEOUT:?}"),
            })
        })
}

async fn lookup_inner(target: &PgTarget, sql: &str) -> Result<Vec<Vec<String>>, SessionError> {
    let failed = |detail: String| SessionError::TargetFailed {
        connection: target.name.clone(),
        detail: format!("catalog lookup: {detail}"),
    };
    let mut up = upstream::connect(target, &[]).await?;
    let mut out = BytesMut::new();
    out.extend_from_slice(b"Q");
    out.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.extend_from_slice(b"\0X\0\0\0\x04");
    up.stream
        .write_all(&out)
        .await
        .map_err(|e| failed(e.to_string()))?;
    up.stream.flush().await.map_err(|e| failed(e.to_string()))?;
    let mut buf = up.buffered;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut error = None;
    loop {
        while let Some(len) =
            codec::frame_len(&buf, MAX_ANSWER_BYTES).map_err(|e| failed(e.to_string()))?
        {
            let (tag, body) = (buf[0], &buf[HEADER_LEN..len]);
            match tag {
                b'D' => {
                    let row = messages::data_row(body).map_err(|e| failed(e.to_string()))?;
                    rows.push(
                        row.iter()
                            .map(|v| {
                                v.map(|v| String::from_utf8_lossy(v).into_owned())
                                    .unwrap_or_default()
                            })
                            .collect(),
                    );
                }
                b'E' => {
                    error = Some(
                        messages::error_fields(body)
                            .map(|f| f.message.to_owned())
                            .unwrap_or_else(|_| "error".into()),
                    )
                }
                b'Z' => {
                    return match error {
                        Some(e) => Err(failed(e)),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
            buf.advance(len);
        }
        buf.reserve(8192);
        let n = up
            .stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            return Err(failed("connection closed".into()));
        }
    }
}

/// A fresh `public.customers (email)` entry, another allocation each
/// call (tests).
#[cfg(test)]
pub(crate) fn test_table() -> Arc<TableInfo> {
    Arc::new(TableInfo {
        schema: "public".into(),
        table: "customers".into(),
        columns: vec![(1, "email".into())],
        view_reads: None,
    })
}

#[cfg(test)]
mod tests {
    use super::test_table as table;
    use super::*;

    /// An entry is current while it is the cached one and within its
    /// minute: a refreshed entry (a table dropped and made again, columns
    /// renamed) is another allocation even when it reads the same.
    #[test]
    fn still_current_means_the_same_cached_entry_within_its_minute() {
        let catalog = Catalog::default();
        let entry = table();
        assert!(catalog.still_current(&[]));
        assert!(
            !catalog.still_current(&[(16384, entry.clone())]),
            "not cached"
        );
        let cached_at = |at| catalog.cache_entry(16384, entry.clone(), at);
        cached_at(Instant::now());
        assert!(catalog.still_current(&[(16384, entry.clone())]));
        assert!(!catalog.still_current(&[(16384, table())]), "refreshed");
        assert!(
            !catalog.still_current(&[(16384, entry.clone()), (16385, table())]),
            "one of two not cached"
        );
        if let Some(old) = Instant::now().checked_sub(CACHE_TTL + Duration::from_secs(1)) {
            cached_at(old);
            assert!(!catalog.still_current(&[(16384, entry)]), "expired");
        }
    }
}
