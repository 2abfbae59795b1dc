//! Templates with the placeholders `{token}`, `{sid}`, `{username}`,
//! `{conn}` (connection index) and `{id}` (a per-connection request counter).
//! Any other brace is literal, so JSON templates work as-is. A template is
//! bound once per connection (everything but `{id}`), after which rendering
//! is a few `memcpy`s plus integer formatting.

use crate::util::{percent_encode, push_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Vec<u8>),
    Token,
    Sid,
    Username,
    Conn,
    Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    segs: Vec<Seg>,
}

/// Per-connection values for the placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub token: &'a str,
    pub sid: &'a str,
    pub username: &'a str,
    pub conn: u64,
}

const NAMES: [(&str, Seg); 5] = [
    ("{token}", Seg::Token),
    ("{sid}", Seg::Sid),
    ("{username}", Seg::Username),
    ("{conn}", Seg::Conn),
    ("{id}", Seg::Id),
];

impl Template {
    pub fn parse(s: &str) -> Template {
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        let b = s.as_bytes();
        'outer: while i < b.len() {
            if b[i] == b'{' {
                for (name, seg) in NAMES.iter() {
                    if s[i..].starts_with(name) {
                        if !lit.is_empty() {
                            segs.push(Seg::Lit(std::mem::take(&mut lit)));
                        }
                        segs.push(seg.clone());
                        i += name.len();
                        continue 'outer;
                    }
                }
            }
            lit.push(b[i]);
            i += 1;
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        Template { segs }
    }

    pub fn has_id(&self) -> bool {
        self.segs.contains(&Seg::Id)
    }

    /// Substitute everything except `{id}`; `url` percent-encodes the values.
    pub fn bind(&self, ctx: &Ctx, url: bool) -> Template {
        let mut segs: Vec<Seg> = Vec::new();
        let mut lit = Vec::new();
        for s in &self.segs {
            match s {
                Seg::Id => {
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(Seg::Id);
                }
                other => render_seg(other, ctx, 0, url, &mut lit),
            }
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        Template { segs }
    }

    /// Append the rendering to `out`.
    pub fn render(&self, ctx: &Ctx, id: u64, url: bool, out: &mut Vec<u8>) {
        for s in &self.segs {
            render_seg(s, ctx, id, url, out);
        }
    }

    /// Render a bound template (only literals and `{id}` left).
    #[inline]
    pub fn render_id(&self, id: u64, out: &mut Vec<u8>) {
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.extend_from_slice(l),
                Seg::Id => push_u64(out, id),
                _ => {}
            }
        }
    }

    /// The rendering as a string (setup-time convenience).
    pub fn to_string_with(&self, ctx: &Ctx, id: u64, url: bool) -> String {
        let mut out = Vec::new();
        self.render(ctx, id, url, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn render_seg(s: &Seg, ctx: &Ctx, id: u64, url: bool, out: &mut Vec<u8>) {
    let val = match s {
        Seg::Lit(l) => {
            out.extend_from_slice(l);
            return;
        }
        Seg::Id => {
            push_u64(out, id);
            return;
        }
        Seg::Conn => {
            push_u64(out, ctx.conn);
            return;
        }
        Seg::Token => ctx.token,
        Seg::Sid => ctx.sid,
        Seg::Username => ctx.username,
    };
    if url {
        percent_encode(val, out);
    } else {
        out.extend_from_slice(val.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Ctx = Ctx {
        token: "a.b-c",
        sid: "s 1",
        username: "u",
        conn: 7,
    };

    #[test]
    fn json_braces_are_literal() {
        let t = Template::parse(r#"{"type":"ping","id":{id}}"#);
        assert!(t.has_id());
        let b = t.bind(&CTX, false);
        let mut out = Vec::new();
        b.render_id(42, &mut out);
        assert_eq!(out, br#"{"type":"ping","id":42}"#);
    }

    #[test]
    fn url_binding_encodes() {
        let t = Template::parse("/ws/connect?session_id={sid}&token={token}&c={conn}&u={username}");
        assert!(!t.has_id());
        assert_eq!(
            t.to_string_with(&CTX, 0, true),
            "/ws/connect?session_id=s%201&token=a.b-c&c=7&u=u"
        );
        assert_eq!(
            t.to_string_with(&CTX, 0, false),
            "/ws/connect?session_id=s 1&token=a.b-c&c=7&u=u"
        );
    }

    #[test]
    fn unknown_and_partial_placeholders() {
        let t = Template::parse("{nope}{id}{i{id}}{");
        let mut out = Vec::new();
        t.bind(&CTX, false).render_id(5, &mut out);
        assert_eq!(out, b"{nope}5{i5}{");
    }
}
