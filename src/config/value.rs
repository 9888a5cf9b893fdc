//! Spanned views of the parsed TOML tree with typed, error-reporting getters.
//! Every getter reports a wrong type itself and returns `None`.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::source::{join, Ctx, Source};

/// A value in a file, with its dotted key and the position of its key.
#[derive(Clone)]
pub(crate) struct Val<'a, 'i> {
    pub src: &'a Source,
    pub key: String,
    /// Byte offset of the key (or of the value, for array elements).
    pub key_at: usize,
    pub v: &'a Spanned<DeValue<'i>>,
}

/// A table in a file.
#[derive(Clone)]
pub(crate) struct Tbl<'a, 'i> {
    pub src: &'a Source,
    pub key: String,
    /// Where errors about the table as a whole point (its header / key).
    pub at: usize,
    pub t: &'a DeTable<'i>,
}

impl<'a, 'i> Val<'a, 'i> {
    /// Byte offset of the value.
    pub fn at(&self) -> usize {
        self.v.span().start
    }

    pub fn line(&self) -> usize {
        self.src.line(self.key_at)
    }

    /// Reports an error at the value's line.
    pub fn err(&self, cx: &mut Ctx, msg: impl Into<String>) {
        cx.err(self.src, self.at(), self.key.clone(), msg);
    }

    /// Reports an error at the key's line.
    pub fn key_err(&self, cx: &mut Ctx, msg: impl Into<String>) {
        cx.err(self.src, self.key_at, self.key.clone(), msg);
    }

    fn type_err(&self, cx: &mut Ctx, want: &str) {
        self.err(cx, format!("expected {want}, found {}", self.v.get_ref().type_str()));
    }

    pub fn str(&self, cx: &mut Ctx) -> Option<&'a str> {
        match self.v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.type_err(cx, "a string");
                None
            }
        }
    }

    pub fn bool(&self, cx: &mut Ctx) -> Option<bool> {
        match self.v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_err(cx, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&self, cx: &mut Ctx, min: i64, max: i64) -> Option<i64> {
        let DeValue::Integer(i) = self.v.get_ref() else {
            self.type_err(cx, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(cx, format!("must be between {min} and {max}"));
                None
            }
        }
    }

    /// A non-negative integer within `min..=max`, as u64.
    pub fn uint(&self, cx: &mut Ctx, min: u64, max: u64) -> Option<u64> {
        let max = max.min(i64::MAX as u64) as i64;
        self.int(cx, min as i64, max).map(|n| n as u64)
    }

    pub fn table(&self, cx: &mut Ctx) -> Option<Tbl<'a, 'i>> {
        match self.v.get_ref() {
            DeValue::Table(t) => Some(Tbl { src: self.src, key: self.key.clone(), at: self.key_at, t }),
            _ => {
                self.type_err(cx, "a table");
                None
            }
        }
    }

    /// The elements of an array, keyed `key[i]`.
    pub fn array(&self, cx: &mut Ctx) -> Option<Vec<Val<'a, 'i>>> {
        let DeValue::Array(a) = self.v.get_ref() else {
            self.type_err(cx, "an array");
            return None;
        };
        Some(
            a.iter()
                .enumerate()
                .map(|(n, v)| Val { src: self.src, key: format!("{}[{n}]", self.key), key_at: v.span().start, v })
                .collect(),
        )
    }

    /// An array of strings; wrong elements are reported and skipped.
    pub fn str_array(&self, cx: &mut Ctx) -> Option<Vec<(&'a str, Val<'a, 'i>)>> {
        let items = self.array(cx)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = item.str(cx) {
                out.push((s, item));
            }
        }
        Some(out)
    }
}

impl<'a, 'i> Tbl<'a, 'i> {
    /// The whole document of a file.
    pub fn root(src: &'a Source, t: &'a DeTable<'i>) -> Self {
        Tbl { src, key: String::new(), at: 0, t }
    }

    /// Entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, Val<'a, 'i>)> + '_ {
        self.t.iter().map(move |(k, v)| {
            let name: &'a str = k.get_ref().as_ref();
            (name, Val { src: self.src, key: join(&self.key, name), key_at: k.span().start, v })
        })
    }

    pub fn get(&self, name: &str) -> Option<Val<'a, 'i>> {
        let (k, v) = self.t.get_key_value(name)?;
        Some(Val { src: self.src, key: join(&self.key, name), key_at: k.span().start, v })
    }

    /// Reports every key not in `known`. Keys in `unsupported` get "not
    /// supported by this build yet" instead of "unknown key".
    pub fn check_keys(&self, cx: &mut Ctx, known: &[&str], unsupported: &[&str]) {
        for (name, v) in self.entries() {
            if known.contains(&name) {
                continue;
            }
            if unsupported.contains(&name) {
                v.key_err(cx, "not supported by this build yet");
            } else {
                let hint = known.iter().filter(|k| edit_distance(k, name) <= 2).min_by_key(|k| edit_distance(k, name));
                match hint {
                    Some(h) => v.key_err(cx, format!("unknown key (did you mean '{h}'?)")),
                    None => v.key_err(cx, "unknown key"),
                }
            }
        }
    }

    pub fn str(&self, cx: &mut Ctx, name: &str) -> Option<&'a str> {
        self.get(name)?.str(cx)
    }

    pub fn bool(&self, cx: &mut Ctx, name: &str) -> Option<bool> {
        self.get(name)?.bool(cx)
    }

    pub fn uint(&self, cx: &mut Ctx, name: &str, min: u64, max: u64) -> Option<u64> {
        self.get(name)?.uint(cx, min, max)
    }

    pub fn table(&self, cx: &mut Ctx, name: &str) -> Option<Tbl<'a, 'i>> {
        self.get(name)?.table(cx)
    }

    /// Reports `TABLE.name: missing required key` (plus `why`) at the table.
    pub fn missing(&self, cx: &mut Ctx, name: &str, why: &str) {
        let msg =
            if why.is_empty() { "missing required key".to_string() } else { format!("missing required key ({why})") };
        cx.err(self.src, self.at, join(&self.key, name), msg);
    }

    /// A required string: reports "missing required key" if absent.
    pub fn req_str(&self, cx: &mut Ctx, name: &str) -> Option<(&'a str, Val<'a, 'i>)> {
        match self.get(name) {
            Some(v) => v.str(cx).map(|s| (s, v)),
            None => {
                self.missing(cx, name, "");
                None
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
