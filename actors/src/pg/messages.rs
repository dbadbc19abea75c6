//! Decoders for the message bodies Gatehouse inspects while relaying.
//!
//! Each takes the body of one isolated frame (the bytes after the five-byte
//! header) and returns borrowed views; everything else is relayed untouched,
//! so FunctionCall and message types this module does not know pass through
//! raw. Client text (SQL, statement and portal names) comes back as bytes:
//! it is in the session's client encoding, which need not be UTF-8 (see
//! [`super::encoding`]).

use super::codec::{CodecError, Reader};

/// A parameter or argument: `(binary format, value)`, `None` for NULL.
pub type Value<'a> = (bool, Option<&'a [u8]>);

/// Frontend `Parse`: a named or unnamed prepared statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    pub statement: &'a [u8],
    pub query: &'a [u8],
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>, CodecError> {
    let mut r = Reader::new(body);
    let statement = r.cstr_bytes("Parse")?;
    let query = r.cstr_bytes("Parse")?;
    let n = r.count(4, "Parse")?;
    r.bytes(n * 4, "Parse")?;
    r.finish("Parse")?;
    Ok(Parse { statement, query })
}

/// Frontend `Bind`: parameter values with their formats.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// `(binary, value)` per parameter; `None` is SQL NULL.
    pub params: Vec<Value<'a>>,
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, CodecError> {
    let mut r = Reader::new(body);
    let portal = r.cstr_bytes("Bind")?;
    let statement = r.cstr_bytes("Bind")?;
    let params = formatted_values(&mut r, "Bind")?;
    let nresults = r.count(2, "Bind")?;
    r.bytes(nresults * 2, "Bind")?;
    r.finish("Bind")?;
    Ok(Bind {
        portal,
        statement,
        params,
    })
}

/// Format codes, then values, as Bind and FunctionCall carry them: no
/// codes (all text), one (applies to all), or one per value; anything else
/// is malformed. `(binary, value)` per value, `None` for NULL.
fn formatted_values<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
) -> Result<Vec<Value<'a>>, CodecError> {
    let nformats = r.count(2, what)?;
    let mut formats = Vec::with_capacity(nformats);
    for _ in 0..nformats {
        formats.push(r.i16(what)? == 1);
    }
    let nvalues = r.count(4, what)?;
    if nformats > 1 && nformats != nvalues {
        return Err(CodecError::Malformed(what));
    }
    let mut values = Vec::with_capacity(nvalues);
    for i in 0..nvalues {
        let binary = match nformats {
            0 => false,
            1 => formats[0],
            _ => formats[i],
        };
        values.push((binary, r.value(what)?));
    }
    Ok(values)
}

/// Frontend `FunctionCall` (the fast-path protocol): the function's OID
/// and its arguments with their formats.
#[derive(Debug, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    pub oid: i32,
    /// `(binary, value)` per argument; `None` is SQL NULL.
    pub args: Vec<Value<'a>>,
}

pub fn function_call(body: &[u8]) -> Result<FunctionCall<'_>, CodecError> {
    let mut r = Reader::new(body);
    let oid = r.i32("FunctionCall")?;
    let args = formatted_values(&mut r, "FunctionCall")?;
    r.i16("FunctionCall")?;
    r.finish("FunctionCall")?;
    Ok(FunctionCall { oid, args })
}

/// Frontend `Execute`.
pub fn execute(body: &[u8]) -> Result<(&[u8], i32), CodecError> {
    let mut r = Reader::new(body);
    let portal = r.cstr_bytes("Execute")?;
    let max_rows = r.i32("Execute")?;
    r.finish("Execute")?;
    Ok((portal, max_rows))
}

/// Frontend `Query` (simple protocol).
pub fn query(body: &[u8]) -> Result<&[u8], CodecError> {
    let mut r = Reader::new(body);
    let sql = r.cstr_bytes("Query")?;
    r.finish("Query")?;
    Ok(sql)
}

/// Backend `RowDescription`: `(name, binary format)` per column, in order.
pub fn row_description(body: &[u8]) -> Result<Vec<(&str, bool)>, CodecError> {
    row_description_map(body, |name, binary| (name, binary))
}

/// [`row_description`], each column's name and binary flag mapped by `f`
/// as it is read: the caller's own vector, without one in between.
pub fn row_description_map<'a, T>(
    body: &'a [u8],
    mut f: impl FnMut(&'a str, bool) -> T,
) -> Result<Vec<T>, CodecError> {
    let mut r = Reader::new(body);
    let n = r.count(19, "RowDescription")?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.cstr("RowDescription")?;
        // table oid, column number, type oid, type size, type modifier
        r.bytes(16, "RowDescription")?;
        names.push(f(name, r.i16("RowDescription")? == 1));
    }
    r.finish("RowDescription")?;
    Ok(names)
}

/// Backend `DataRow`: the column values, `None` for NULL.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, CodecError> {
    data_row_map(body, |_, v| v)
}

/// [`data_row`], each value mapped by `f` (with its column's index) as it
/// is read: the caller's own vector, without one in between.
pub fn data_row_map<'a, T>(
    body: &'a [u8],
    mut f: impl FnMut(usize, Option<&'a [u8]>) -> T,
) -> Result<Vec<T>, CodecError> {
    let mut r = Reader::new(body);
    let n = r.count(4, "DataRow")?;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        values.push(f(i, r.value("DataRow")?));
    }
    r.finish("DataRow")?;
    Ok(values)
}

/// Backend `CommandComplete`: the command tag, e.g. `SELECT 3`.
pub fn command_complete(body: &[u8]) -> Result<&str, CodecError> {
    let mut r = Reader::new(body);
    let tag = r.cstr("CommandComplete")?;
    r.finish("CommandComplete")?;
    Ok(tag)
}

/// The fields of an ErrorResponse or NoticeResponse that a reader needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
}

/// Texts in another client encoding than UTF-8 read as empty here; the
/// fields the gateway matches on (severity, SQLSTATE) are always ASCII.
pub fn error_fields(body: &[u8]) -> Result<ErrorFields<'_>, CodecError> {
    let mut r = Reader::new(body);
    let mut fields = ErrorFields::default();
    loop {
        let kind = r.u8("ErrorResponse")?;
        if kind == 0 {
            break;
        }
        let value = std::str::from_utf8(r.cstr_bytes("ErrorResponse")?).unwrap_or_default();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
    r.finish("ErrorResponse")?;
    Ok(fields)
}

/// Backend `NotificationResponse`: `(process id, channel, payload)`.
pub fn notification(body: &[u8]) -> Result<(i32, &str, &str), CodecError> {
    let mut r = Reader::new(body);
    let pid = r.i32("NotificationResponse")?;
    let channel = r.cstr("NotificationResponse")?;
    let payload = r.cstr("NotificationResponse")?;
    r.finish("NotificationResponse")?;
    Ok((pid, channel, payload))
}

/// The number a command tag reports (`INSERT 0 5` → 5, `SELECT 3` → 3).
pub fn tag_rows(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::IsNull;
    use postgres_protocol::message::frontend;

    fn body(buf: &BytesMut) -> &[u8] {
        &buf[5..]
    }

    #[test]
    fn parse_and_bind_round_trip_through_libpq_encoder() {
        let mut buf = BytesMut::new();
        frontend::parse("s1", "select $1, $2", [25, 23], &mut buf).unwrap();
        assert_eq!(
            parse(body(&buf)).unwrap(),
            Parse {
                statement: b"s1",
                query: b"select $1, $2"
            }
        );

        let mut buf = BytesMut::new();
        let values: [Option<&[u8]>; 2] = [Some(b"abc"), None];
        frontend::bind(
            "p",
            "s1",
            [0i16],
            values,
            |v, out| match v {
                Some(v) => {
                    out.extend_from_slice(v);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [0i16],
            &mut buf,
        )
        .map_err(|_| ())
        .unwrap();
        let b = bind(body(&buf)).unwrap();
        assert_eq!(b.portal, b"p");
        assert_eq!(b.params, vec![(false, Some(&b"abc"[..])), (false, None)]);
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        assert!(parse(&[]).is_err());
        assert!(parse(b"s\0select\0\0").is_err());
        assert!(bind(&[]).is_err());
        assert!(data_row(&[0, 5]).is_err());
        assert!(data_row(&[0, 1, 0, 0, 0, 9, 1]).is_err());
        assert!(row_description(&[0, 1, b'a', 0]).is_err());
        assert!(query(b"select 1").is_err());
        // Text in another client encoding is not malformed.
        assert_eq!(query(b"select '\xe9'\0"), Ok(&b"select '\xe9'"[..]));
        assert!(error_fields(b"Sx").is_err());
    }

    #[test]
    fn forged_counts_do_not_allocate() {
        // 32767 columns claimed in a 2-byte body.
        assert!(data_row(&[0x7f, 0xff]).is_err());
        assert!(bind(b"\0\0\x7f\xff").is_err());
    }

    #[test]
    fn function_call_decodes_and_rejects_truncation() {
        // oid 764 (lo_import), one text format, one argument "/etc/x", text result.
        let mut body = vec![0, 0, 2, 0xfc, 0, 1, 0, 0, 0, 1, 0, 0, 0, 6];
        body.extend_from_slice(b"/etc/x");
        body.extend_from_slice(&[0, 0]);
        let f = function_call(&body).unwrap();
        assert_eq!(f.oid, 764);
        assert_eq!(f.args, vec![(false, Some(&b"/etc/x"[..]))]);
        assert!(function_call(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("SELECT 3"), Some(3));
        assert_eq!(tag_rows("BEGIN"), None);
    }
}

/// One column of a RowDescription, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowColumn<'a> {
    pub name: &'a str,
    /// 0 when the column is computed rather than read from a table.
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub binary: bool,
}

/// Backend `RowDescription` with every field masking needs.
pub fn row_columns(body: &[u8]) -> Result<Vec<RowColumn<'_>>, CodecError> {
    let mut r = Reader::new(body);
    let n = r.count(19, "RowDescription")?;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.cstr("RowDescription")?;
        let table_oid = r.i32("RowDescription")? as u32;
        let attnum = r.i16("RowDescription")?;
        let type_oid = r.i32("RowDescription")? as u32;
        // type size, type modifier
        r.bytes(6, "RowDescription")?;
        let binary = r.i16("RowDescription")? == 1;
        cols.push(RowColumn {
            name,
            table_oid,
            attnum,
            type_oid,
            binary,
        });
    }
    r.finish("RowDescription")?;
    Ok(cols)
}

/// Every `(code, value)` field of an ErrorResponse or NoticeResponse. The
/// values are in the session's client encoding, so bytes, not text.
pub fn error_field_list(body: &[u8]) -> Result<Vec<(u8, &[u8])>, CodecError> {
    let mut r = Reader::new(body);
    let mut fields = Vec::new();
    loop {
        let kind = r.u8("ErrorResponse")?;
        if kind == 0 {
            break;
        }
        fields.push((kind, r.cstr_bytes("ErrorResponse")?));
    }
    r.finish("ErrorResponse")?;
    Ok(fields)
}

/// Backend `CopyOutResponse`: overall format (0 text, 1 binary) and the
/// per-column formats.
pub fn copy_response(body: &[u8]) -> Result<(u8, Vec<i16>), CodecError> {
    let mut r = Reader::new(body);
    let format = r.u8("CopyResponse")?;
    let n = r.count(2, "CopyResponse")?;
    let mut formats = Vec::with_capacity(n);
    for _ in 0..n {
        formats.push(r.i16("CopyResponse")?);
    }
    r.finish("CopyResponse")?;
    Ok((format, formats))
}

/// Frontend `Close`: `(b'S' | b'P', name)`.
pub fn close(body: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let mut r = Reader::new(body);
    let what = r.u8("Close")?;
    let name = r.cstr_bytes("Close")?;
    r.finish("Close")?;
    Ok((what, name))
}

/// Frontend `Describe`: `(b'S' | b'P', name)`.
pub fn describe(body: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let mut r = Reader::new(body);
    let what = r.u8("Describe")?;
    let name = r.cstr_bytes("Describe")?;
    r.finish("Describe")?;
    Ok((what, name))
}

/// Backend `ParameterStatus`: `(name, value)`.
pub fn parameter_status(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let mut r = Reader::new(body);
    let name = r.cstr("ParameterStatus")?;
    let value = r.cstr("ParameterStatus")?;
    r.finish("ParameterStatus")?;
    Ok((name, value))
}
