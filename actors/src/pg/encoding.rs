//! The session's client encoding: how the text a client sends and the
//! text the target returns are decoded for the recording, the policy and
//! masking.
//!
//! PostgreSQL converts between the client encoding and the database's
//! encoding at the protocol boundary, so every SQL string, parameter and
//! value on the wire is in the encoding the session last set
//! (`client_encoding`, reported by the target in ParameterStatus). The
//! gateway relays those bytes untouched and only decodes its own copy:
//! with [`encoding_rs`] for the encodings it implements, byte for byte for
//! the ISO 8859 family's C1 range that the WHATWG tables map differently,
//! and not at all for the few PostgreSQL encodings nothing here decodes
//! (`EUC_TW`, `MULE_INTERNAL`, `JOHAB`, the `*_2004` variants) or for bytes
//! invalid in the encoding — those are recorded as bytes.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

use encoding_rs::Encoding;

/// The encoding both pumps of one session read with: the target pump sets
/// it when the target reports `client_encoding`, the client pump reads it.
pub type SessionEncoding = Rc<Cell<ClientEncoding>>;

/// One of PostgreSQL's client encodings, by its canonical name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEncoding {
    name: &'static str,
    decoder: Decoder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    Utf8,
    /// ISO 8859-1: every byte is the code point of the same number.
    Latin1,
    Table(&'static Encoding),
    /// An ISO 8859 code page whose WHATWG label means the Windows code
    /// page: identical except 0x80..=0x9F, which ISO keeps as C1 controls.
    IsoOver(&'static Encoding),
    /// Known to PostgreSQL, decoded by nothing here.
    None,
}

impl Default for ClientEncoding {
    fn default() -> Self {
        ClientEncoding::UTF8
    }
}

impl ClientEncoding {
    pub const UTF8: ClientEncoding = ClientEncoding {
        name: "UTF8",
        decoder: Decoder::Utf8,
    };

    /// The encoding PostgreSQL names `name` (any spelling it accepts:
    /// `LATIN9`, `latin-9`, `ISO-8859-15` ...). An unknown name yields an
    /// encoding that decodes nothing, so its text is kept as bytes.
    pub fn from_pg_name(name: &str) -> ClientEncoding {
        // PostgreSQL compares encoding names ignoring case and every
        // character that is not a letter or a digit.
        let key: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let (name, decoder) = match key.as_str() {
            "utf8" | "unicode" => return ClientEncoding::UTF8,
            // No conversion at all: bytes as the client sent them, which
            // are readable exactly when they are UTF-8.
            "sqlascii" => ("SQL_ASCII", Decoder::Utf8),
            "latin1" | "iso88591" => ("LATIN1", Decoder::Latin1),
            "latin2" | "iso88592" => ("LATIN2", table(encoding_rs::ISO_8859_2)),
            "latin3" | "iso88593" => ("LATIN3", table(encoding_rs::ISO_8859_3)),
            "latin4" | "iso88594" => ("LATIN4", table(encoding_rs::ISO_8859_4)),
            "latin5" | "iso88599" => ("LATIN5", Decoder::IsoOver(encoding_rs::WINDOWS_1254)),
            "latin6" | "iso885910" => ("LATIN6", table(encoding_rs::ISO_8859_10)),
            "latin7" | "iso885913" => ("LATIN7", table(encoding_rs::ISO_8859_13)),
            "latin8" | "iso885914" => ("LATIN8", table(encoding_rs::ISO_8859_14)),
            "latin9" | "iso885915" => ("LATIN9", table(encoding_rs::ISO_8859_15)),
            "latin10" | "iso885916" => ("LATIN10", table(encoding_rs::ISO_8859_16)),
            "iso88595" => ("ISO_8859_5", table(encoding_rs::ISO_8859_5)),
            "iso88596" => ("ISO_8859_6", table(encoding_rs::ISO_8859_6)),
            "iso88597" => ("ISO_8859_7", table(encoding_rs::ISO_8859_7)),
            "iso88598" => ("ISO_8859_8", table(encoding_rs::ISO_8859_8)),
            "win866" | "alt" | "cp866" => ("WIN866", table(encoding_rs::IBM866)),
            "win874" | "cp874" => ("WIN874", table(encoding_rs::WINDOWS_874)),
            "win1250" | "cp1250" => ("WIN1250", table(encoding_rs::WINDOWS_1250)),
            "win1251" | "win" | "cp1251" => ("WIN1251", table(encoding_rs::WINDOWS_1251)),
            "win1252" | "cp1252" => ("WIN1252", table(encoding_rs::WINDOWS_1252)),
            "win1253" | "cp1253" => ("WIN1253", table(encoding_rs::WINDOWS_1253)),
            "win1254" | "cp1254" => ("WIN1254", table(encoding_rs::WINDOWS_1254)),
            "win1255" | "cp1255" => ("WIN1255", table(encoding_rs::WINDOWS_1255)),
            "win1256" | "cp1256" => ("WIN1256", table(encoding_rs::WINDOWS_1256)),
            "win1257" | "cp1257" => ("WIN1257", table(encoding_rs::WINDOWS_1257)),
            "win1258" | "abc" | "tcvn" | "tcvn5712" | "vscii" | "cp1258" => {
                ("WIN1258", table(encoding_rs::WINDOWS_1258))
            }
            "koi8r" | "koi8" => ("KOI8R", table(encoding_rs::KOI8_R)),
            "koi8u" => ("KOI8U", table(encoding_rs::KOI8_U)),
            "big5" | "cp950" => ("BIG5", table(encoding_rs::BIG5)),
            "gbk" | "cp936" | "windows936" => ("GBK", table(encoding_rs::GBK)),
            // EUC-CN is GB 2312, which GBK extends byte for byte.
            "euccn" => ("EUC_CN", table(encoding_rs::GBK)),
            "gb18030" => ("GB18030", table(encoding_rs::GB18030)),
            "eucjp" => ("EUC_JP", table(encoding_rs::EUC_JP)),
            "sjis" | "shiftjis" | "mskanji" | "windows932" => {
                ("SJIS", table(encoding_rs::SHIFT_JIS))
            }
            // The WHATWG EUC-KR is Windows 949, the Unified Hangul Code.
            "euckr" => ("EUC_KR", table(encoding_rs::EUC_KR)),
            "uhc" | "windows949" => ("UHC", table(encoding_rs::EUC_KR)),
            "euctw" => ("EUC_TW", Decoder::None),
            "eucjis2004" => ("EUC_JIS_2004", Decoder::None),
            "shiftjis2004" => ("SHIFT_JIS_2004", Decoder::None),
            "johab" => ("JOHAB", Decoder::None),
            "muleinternal" => ("MULE_INTERNAL", Decoder::None),
            _ => ("unknown", Decoder::None),
        };
        ClientEncoding { name, decoder }
    }

    /// PostgreSQL's canonical name (`LATIN9`, `UTF8` ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether text in this encoding is UTF-8 already (UTF8, and SQL_ASCII
    /// whose bytes are readable only when they are UTF-8).
    pub fn is_utf8(&self) -> bool {
        self.decoder == Decoder::Utf8
    }

    /// The text `bytes` encode, or `None` when they are not valid in this
    /// encoding or nothing here decodes it.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        match self.decoder {
            Decoder::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            // Every encoding PostgreSQL speaks to clients reads ASCII-only
            // bytes as ASCII, including the ones nothing here decodes.
            _ if bytes.is_ascii() => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Decoder::Latin1 => Some(Cow::Owned(bytes.iter().map(|b| char::from(*b)).collect())),
            Decoder::Table(enc) => enc.decode_without_bom_handling_and_without_replacement(bytes),
            Decoder::IsoOver(enc) => {
                let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
                for run in bytes.split_inclusive(|b| (0x80..=0x9f).contains(b)) {
                    let (text, c1) = match run.split_last() {
                        Some((last, head)) if (0x80..=0x9f).contains(last) => (head, Some(*last)),
                        _ => (run, None),
                    };
                    out.push_str(&enc.decode_without_bom_handling_and_without_replacement(text)?);
                    if let Some(b) = c1 {
                        out.push(char::from(b));
                    }
                }
                Some(Cow::Owned(out))
            }
            Decoder::None => None,
        }
    }

    /// [`decode`](Self::decode), or the bytes written as `\x` and hex when
    /// they do not decode: how values are shown in a recording.
    pub fn text_or_hex(&self, bytes: &[u8]) -> String {
        match self.decode(bytes) {
            Some(text) => text.into_owned(),
            None => format!("\\x{}", hex::encode(bytes)),
        }
    }

    /// Best-effort text for a log line or a name: undecodable bytes become
    /// U+FFFD.
    pub fn decode_lossy<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self.decode(bytes) {
            Some(text) => text,
            None => String::from_utf8_lossy(bytes),
        }
    }
}

fn table(enc: &'static Encoding) -> Decoder {
    Decoder::Table(enc)
}

/// A statement or portal name as the policy tracker keys it: its UTF-8
/// text, or for other bytes a form no UTF-8 name can take (names never
/// contain NUL), so two different names never share a key.
pub fn name_key(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(format!("\0{}", hex::encode(bytes))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin9_decodes_the_euro_sign_and_latin1_does_not() {
        let latin9 = ClientEncoding::from_pg_name("LATIN9");
        assert_eq!(latin9.name(), "LATIN9");
        assert_eq!(latin9.decode(b"caf\xe9 \xa4").as_deref(), Some("café €"));
        let latin1 = ClientEncoding::from_pg_name("latin-1");
        assert_eq!(latin1.decode(b"caf\xe9 \xa4").as_deref(), Some("café ¤"));
        // Spellings PostgreSQL accepts.
        assert_eq!(ClientEncoding::from_pg_name("ISO-8859-15"), latin9);
        assert_eq!(ClientEncoding::from_pg_name("Win1252").name(), "WIN1252");
    }

    #[test]
    fn utf8_and_sql_ascii_keep_invalid_bytes_as_bytes() {
        let utf8 = ClientEncoding::from_pg_name("UTF8");
        assert!(utf8.is_utf8());
        assert_eq!(utf8.decode(b"\xe9"), None);
        assert_eq!(utf8.text_or_hex(b"a\xe9"), "\\x61e9");
        let ascii = ClientEncoding::from_pg_name("SQL_ASCII");
        assert_eq!(ascii.decode("é".as_bytes()).as_deref(), Some("é"));
        assert_eq!(ascii.decode(b"\xff"), None);
    }

    #[test]
    fn iso_8859_9_keeps_c1_controls_where_windows_1254_has_letters() {
        let latin5 = ClientEncoding::from_pg_name("LATIN5");
        // 0x80 is the euro sign in Windows 1254 and a C1 control in ISO.
        assert_eq!(latin5.decode(b"\x80\xfe").as_deref(), Some("\u{80}ş"));
    }

    #[test]
    fn multibyte_encodings_and_ones_nothing_decodes() {
        let sjis = ClientEncoding::from_pg_name("SJIS");
        assert_eq!(sjis.decode(b"\x93\xfa\x96\x7b").as_deref(), Some("日本"));
        // A truncated character is not valid.
        assert_eq!(sjis.decode(b"\x93"), None);
        let tw = ClientEncoding::from_pg_name("EUC_TW");
        assert_eq!(tw.decode(b"select 1").as_deref(), Some("select 1"));
        assert_eq!(tw.decode(b"select '\xa4\xa1'"), None);
    }

    #[test]
    fn name_keys_are_distinct_for_distinct_bytes() {
        assert_eq!(name_key(b"s1"), "s1");
        assert_ne!(name_key(b"\xe9"), name_key(b"\xea"));
        assert!(name_key(b"\xe9").starts_with('\0'));
    }
}
