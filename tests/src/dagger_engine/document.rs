//! Documents as the SDK builds them: linear selections, `query{a(x:1){b{... on T{c}}}}`,
//! parsed into a chain of fields and fragments, and their canonical form (arguments sorted).

use anyhow::{Context, Result, bail};

/// An argument value, with the exact text it was written as.
#[derive(Debug, Clone)]
pub enum ArgValue {
    Str(String),
    List(Vec<ArgValue>),
    Object(Vec<(String, ArgValue)>),
    /// Booleans, numbers, enums, null.
    Word(String),
}

#[derive(Debug, Clone)]
pub enum Sel {
    Field {
        name: String,
        /// (name, value, raw text)
        args: Vec<(String, ArgValue, String)>,
    },
    Fragment(String),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<()> {
        if !self.eat(c) {
            bail!("expected `{}` at {}", c as char, self.i);
        }
        Ok(())
    }
    fn name(&mut self) -> Result<String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        if start == self.i {
            bail!("expected a name at {start}");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).to_string())
    }
    fn value(&mut self) -> Result<(ArgValue, String)> {
        self.ws();
        let start = self.i;
        let v = match self.s.get(self.i) {
            Some(b'"') => {
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i] != b'"' {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                self.i += 1;
                let raw = std::str::from_utf8(&self.s[start..self.i.min(self.s.len())])?;
                ArgValue::Str(serde_json::from_str(raw).context("string literal")?)
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat(b']') {
                    items.push(self.value()?.0);
                    self.eat(b',');
                }
                ArgValue::List(items)
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                while !self.eat(b'}') {
                    let k = self.name()?;
                    self.expect(b':')?;
                    fields.push((k, self.value()?.0));
                    self.eat(b',');
                }
                ArgValue::Object(fields)
            }
            Some(_) => {
                while self.i < self.s.len() && !b",)]} \n\t".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                ArgValue::Word(String::from_utf8_lossy(&self.s[start..self.i]).to_string())
            }
            None => bail!("value expected at end of document"),
        };
        Ok((
            v,
            String::from_utf8_lossy(&self.s[start..self.i]).to_string(),
        ))
    }
}

/// Parses a linear selection document into its chain of fields and fragments.
pub fn parse_document(doc: &str) -> Result<Vec<Sel>> {
    let mut p = Parser {
        s: doc.as_bytes(),
        i: 0,
    };
    if p.name()? != "query" {
        bail!("document must start with `query`");
    }
    p.expect(b'{')?;
    let mut chain = Vec::new();
    let mut depth = 1;
    loop {
        p.ws();
        if p.s[p.i..].starts_with(b"...") {
            p.i += 3;
            if p.name()? != "on" {
                bail!("expected `on` after `...`");
            }
            chain.push(Sel::Fragment(p.name()?));
        } else {
            let name = p.name()?;
            let mut args = Vec::new();
            if p.eat(b'(') {
                while !p.eat(b')') {
                    let k = p.name()?;
                    p.expect(b':')?;
                    let (v, raw) = p.value()?;
                    args.push((k, v, raw));
                    p.eat(b',');
                }
            }
            chain.push(Sel::Field { name, args });
        }
        if p.eat(b'{') {
            depth += 1;
            continue;
        }
        break;
    }
    for _ in 0..depth {
        p.expect(b'}')?;
    }
    p.ws();
    if p.i != p.s.len() {
        bail!("trailing text at {}", p.i);
    }
    Ok(chain)
}

/// Renders a chain as the SDK writes it, with each field's arguments sorted by name.
pub fn canonical(chain: &[Sel]) -> String {
    let mut parts = vec!["query".to_string()];
    for sel in chain {
        parts.push(match sel {
            Sel::Fragment(t) => format!("... on {t}"),
            Sel::Field { name, args } if args.is_empty() => name.clone(),
            Sel::Field { name, args } => {
                let mut args: Vec<_> = args
                    .iter()
                    .map(|(k, _, raw)| format!("{k}:{raw}"))
                    .collect();
                args.sort();
                format!("{name}({})", args.join(", "))
            }
        });
    }
    let n = parts.len() - 1;
    parts.join("{") + &"}".repeat(n)
}

/// Canonical form of a document given as text (for writing expectations).
pub fn canonicalize(doc: &str) -> String {
    parse_document(doc)
        .map(|c| canonical(&c))
        .unwrap_or_else(|e| panic!("unparsable document {doc}: {e}"))
}
