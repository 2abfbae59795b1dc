//! Credentials: JSON lines `{"token":..,"session_id":..,"username":..}`
//! assigned round-robin, or one `--token`/`--sid` pair for everyone.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    pub token: String,
    pub sid: Option<String>,
    pub username: String,
}

#[derive(Debug, Clone)]
pub struct Creds {
    list: Vec<Cred>,
    prefix: String,
}

impl Creds {
    pub fn single(token: Option<String>, sid: Option<String>) -> Creds {
        Creds {
            list: vec![Cred {
                token: token.unwrap_or_default(),
                sid,
                username: String::new(),
            }],
            prefix: format!("lg{}", std::process::id()),
        }
    }

    pub fn parse_lines(text: &str) -> Result<Creds, String> {
        let mut list = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("creds line {}: {e}", n + 1))?;
            let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let token =
                get("token").ok_or_else(|| format!("creds line {}: no \"token\"", n + 1))?;
            list.push(Cred {
                token,
                sid: get("session_id").or_else(|| get("sid")),
                username: get("username").unwrap_or_default(),
            });
        }
        if list.is_empty() {
            return Err("creds file has no entries".into());
        }
        Ok(Creds {
            list,
            prefix: format!("lg{}", std::process::id()),
        })
    }

    pub fn load(path: &Path) -> Result<Creds, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Creds::parse_lines(&text)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `(token, session id, username)` for connection `i`. Without a session
    /// id, one unique per connection is made up.
    pub fn for_conn(&self, i: usize) -> (String, String, String) {
        let c = &self.list[i % self.list.len()];
        let sid = c
            .sid
            .clone()
            .unwrap_or_else(|| format!("{}-{i}", self.prefix));
        (c.token.clone(), sid, c.username.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin() {
        let c = Creds::parse_lines(
            "{\"token\":\"t1\",\"session_id\":\"s1\",\"username\":\"u1\"}\n\n# c\n{\"token\":\"t2\",\"sid\":\"s2\"}\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.for_conn(0), ("t1".into(), "s1".into(), "u1".into()));
        assert_eq!(c.for_conn(1), ("t2".into(), "s2".into(), "".into()));
        assert_eq!(c.for_conn(2).0, "t1");
    }

    #[test]
    fn errors() {
        assert!(Creds::parse_lines("").is_err());
        assert!(Creds::parse_lines("{\"session_id\":\"x\"}").is_err());
        assert!(Creds::parse_lines("not json").is_err());
    }

    #[test]
    fn single_makes_unique_sids() {
        let c = Creds::single(Some("tok".into()), None);
        assert_ne!(c.for_conn(0).1, c.for_conn(1).1);
        assert_eq!(c.for_conn(3).0, "tok");
        let c = Creds::single(None, Some("fixed".into()));
        assert_eq!(c.for_conn(5).1, "fixed");
    }
}
