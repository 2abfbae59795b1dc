//! Channel names, namespaces and who may subscribe or publish where.
//!
//! A channel's namespace is the text before its first `:` (`""` without
//! one). Namespaces are configured once; a check is a byte scan of the name
//! plus one hash lookup of a borrowed slice, with no allocation.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub const MAX_CHANNEL_LEN: usize = 255;

/// Bytes allowed in channel names: `[A-Za-z0-9_\-.:@=/+]`.
const ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b'-' | b'.' | b':' | b'@' | b'=' | b'/' | b'+');
        b += 1;
    }
    table
};

pub fn is_valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && !name.starts_with(':')
        && name.bytes().all(|b| ALLOWED[usize::from(b)])
}

/// The text before the first `:`, or `""`.
pub fn namespace(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(ns, _)| ns)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

impl Action {
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "subscribe" => Some(Action::Subscribe),
            "publish" => Some(Action::Publish),
            _ => None,
        }
    }
}

/// Why an action was refused; the value is the protocol error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Denied {
    InvalidChannel = 400,
    Forbidden = 403,
    UnknownNamespace = 404,
}

/// Roles allowed to do something: `"*"` or a list (empty: nobody).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roles {
    Any,
    Only(Vec<Box<str>>),
}

impl Roles {
    fn allows(&self, role: &str) -> bool {
        match self {
            Roles::Any => true,
            Roles::Only(roles) => roles.iter().any(|r| **r == *role),
        }
    }

    fn admin_only() -> Roles {
        Roles::Only(vec!["admin".into()])
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Roles, D::Error> {
        struct RolesVisitor;
        impl<'de> Visitor<'de> for RolesVisitor {
            type Value = Roles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""*" or a list of role names"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Roles, E> {
                match s {
                    "*" => Ok(Roles::Any),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Roles, A::Error> {
                let mut roles = Vec::new();
                while let Some(role) = seq.next_element::<String>()? {
                    roles.push(role.into_boxed_str());
                }
                Ok(Roles::Only(roles))
            }
        }
        d.deserialize_any(RolesVisitor)
    }
}

/// One configured namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub subscribe: Roles,
    pub publish: Roles,
    pub history_size: usize,
    /// Seconds; 0 means publications never expire.
    pub history_ttl: f64,
    pub presence: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceConfig {
    name: String,
    #[serde(default, deserialize_with = "present")]
    subscribe: Option<Roles>,
    #[serde(default, deserialize_with = "present")]
    publish: Option<Roles>,
    #[serde(default)]
    history_size: usize,
    #[serde(default)]
    history_ttl: f64,
    #[serde(default)]
    presence: bool,
}

/// An omitted member is `None`; an explicit `null` is an error, not a default
/// (a permission system should not guess).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Roles>, D::Error> {
    Roles::deserialize(d).map(Some)
}

/// The permission rules for all channels.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    namespaces: HashMap<Box<str>, Namespace>,
    allow_unknown: bool,
}

impl Policy {
    /// Parses the namespace list. Omitted `subscribe`/`publish` mean `"*"`
    /// (as for an unconfigured namespace), except in `admin` where they mean
    /// `["admin"]`.
    pub fn from_json(namespaces_json: &[u8], allow_unknown: bool) -> Result<Policy, String> {
        let configs: Vec<NamespaceConfig> = serde_json::from_slice(namespaces_json)
            .map_err(|e| format!("invalid namespaces config: {e}"))?;
        let mut namespaces = HashMap::with_capacity(configs.len());
        for config in configs {
            let name = config.name;
            if name.contains(':') || !name.bytes().all(|b| ALLOWED[usize::from(b)]) {
                return Err(format!("invalid namespace name {name:?}"));
            }
            if !config.history_ttl.is_finite() || config.history_ttl < 0.0 {
                return Err(format!("namespace {name:?}: history_ttl must be >= 0"));
            }
            let default = || {
                if name == "admin" {
                    Roles::admin_only()
                } else {
                    Roles::Any
                }
            };
            let namespace = Namespace {
                subscribe: config.subscribe.unwrap_or_else(default),
                publish: config.publish.unwrap_or_else(default),
                history_size: config.history_size,
                history_ttl: config.history_ttl,
                presence: config.presence,
            };
            if namespaces.insert(name.clone().into(), namespace).is_some() {
                return Err(format!("namespace {name:?} is configured twice"));
            }
        }
        Ok(Policy {
            namespaces,
            allow_unknown,
        })
    }

    pub fn get(&self, namespace: &str) -> Option<&Namespace> {
        self.namespaces.get(namespace)
    }

    /// Whether `user_id` with `role` may perform `action` on `channel`.
    ///
    /// Built-in rules come first and configuration can only tighten them:
    /// `user:<id>` is subscribable only by that user and never publishable
    /// by clients. `admin` is admin-only unless configured.
    pub fn check(
        &self,
        action: Action,
        channel: &str,
        user_id: &str,
        role: &str,
    ) -> Result<(), Denied> {
        if !is_valid_channel(channel) {
            return Err(Denied::InvalidChannel);
        }
        let ns = namespace(channel);
        let configured = self.namespaces.get(ns);
        let roles = configured.map(|n| match action {
            Action::Subscribe => &n.subscribe,
            Action::Publish => &n.publish,
        });
        let allowed = match (ns, roles) {
            ("user", roles) => {
                let owner = &channel["user:".len()..];
                action == Action::Subscribe
                    && !owner.is_empty()
                    && owner == user_id
                    && roles.is_none_or(|r| r.allows(role))
            }
            (_, Some(roles)) => roles.allows(role),
            ("admin", None) => role == "admin",
            (_, None) if self.allow_unknown => true,
            (_, None) => return Err(Denied::UnknownNamespace),
        };
        if allowed {
            Ok(())
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// `(history_size, history_ttl, presence)` of the channel's namespace.
    pub fn options(&self, channel: &str) -> (usize, f64, bool) {
        self.namespaces
            .get(namespace(channel))
            .map_or((0, 0.0, false), |n| {
                (n.history_size, n.history_ttl, n.presence)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Publish, Subscribe};

    fn policy(json: &str, allow_unknown: bool) -> Policy {
        Policy::from_json(json.as_bytes(), allow_unknown).unwrap()
    }

    #[test]
    fn channel_names() {
        assert!(is_valid_channel("a"));
        assert!(is_valid_channel("chat:room-1_x.y@z=w/v+u"));
        assert!(is_valid_channel(&"a".repeat(255)));
        for bad in ["", ":x", "a b", "é", "a#b", "a*", &"a".repeat(256)] {
            assert!(!is_valid_channel(bad), "{bad:?}");
        }
        assert_eq!(namespace("chat:a:b"), "chat");
        assert_eq!(namespace("lobby"), "");
        assert_eq!(namespace("x:"), "x");
    }

    #[test]
    fn unknown_namespaces_follow_allow_unknown() {
        let open = policy("[]", true);
        let closed = policy("[]", false);
        assert_eq!(open.check(Publish, "chat:x", "u", "user"), Ok(()));
        assert_eq!(
            closed.check(Subscribe, "chat:x", "u", "user"),
            Err(Denied::UnknownNamespace)
        );
        assert_eq!(
            closed.check(Subscribe, "bad name", "u", "user"),
            Err(Denied::InvalidChannel)
        );
    }

    #[test]
    fn personal_channels_are_built_in() {
        for p in [
            policy("[]", false),
            policy(r#"[{"name":"user","publish":"*"}]"#, true),
        ] {
            assert_eq!(p.check(Subscribe, "user:42", "42", "user"), Ok(()));
            assert_eq!(
                p.check(Subscribe, "user:42", "43", "admin"),
                Err(Denied::Forbidden)
            );
            assert_eq!(
                p.check(Publish, "user:42", "42", "admin"),
                Err(Denied::Forbidden)
            );
            assert_eq!(
                p.check(Subscribe, "user:", "", "user"),
                Err(Denied::Forbidden)
            );
            assert_eq!(p.check(Subscribe, "user:a:b", "a:b", "user"), Ok(()));
        }
        let tight = policy(r#"[{"name":"user","subscribe":["admin"]}]"#, true);
        assert_eq!(
            tight.check(Subscribe, "user:1", "1", "user"),
            Err(Denied::Forbidden)
        );
        assert_eq!(tight.check(Subscribe, "user:1", "1", "admin"), Ok(()));
    }

    #[test]
    fn admin_namespace_defaults_to_admins_only() {
        let p = policy("[]", true);
        assert_eq!(
            p.check(Subscribe, "admin:x", "u", "user"),
            Err(Denied::Forbidden)
        );
        assert_eq!(p.check(Publish, "admin:x", "u", "admin"), Ok(()));
        let partial = policy(r#"[{"name":"admin","subscribe":"*"}]"#, true);
        assert_eq!(partial.check(Subscribe, "admin:x", "u", "user"), Ok(()));
        assert_eq!(
            partial.check(Publish, "admin:x", "u", "user"),
            Err(Denied::Forbidden)
        );
        // "admin" without a colon is in the "" namespace.
        assert_eq!(p.check(Subscribe, "admin", "u", "user"), Ok(()));
    }

    #[test]
    fn configured_roles() {
        let p = policy(
            r#"[{"name":"news","subscribe":"*","publish":["editor","admin"],"history_size":10,
                 "history_ttl":2.5,"presence":true},
                {"name":"","subscribe":[],"publish":[]},
                {"name":"chat"}]"#,
            false,
        );
        assert_eq!(p.check(Subscribe, "news:a", "u", "anyone"), Ok(()));
        assert_eq!(
            p.check(Publish, "news:a", "u", "user"),
            Err(Denied::Forbidden)
        );
        assert_eq!(p.check(Publish, "news:a", "u", "editor"), Ok(()));
        assert_eq!(
            p.check(Subscribe, "lobby", "u", "admin"),
            Err(Denied::Forbidden)
        );
        assert_eq!(p.check(Publish, "chat:1", "u", "user"), Ok(()));
        assert_eq!(p.options("news:a"), (10, 2.5, true));
        assert_eq!(p.options("chat:1"), (0, 0.0, false));
        assert_eq!(p.options("other:1"), (0, 0.0, false));
    }

    #[test]
    fn bad_configs_are_explained() {
        for (json, needle) in [
            ("{}", "invalid namespaces config"),
            (r#"[{"name":"a","subscribe":"all"}]"#, "\"*\" or a list"),
            (r#"[{"name":"a","publish":[1]}]"#, "invalid type"),
            (r#"[{"name":"a","publish":null}]"#, "invalid type: null"),
            (r#"[{"name":"a","histroy_size":1}]"#, "unknown field"),
            (r#"[{"name":"a","history_size":-1}]"#, "invalid value"),
            (r#"[{"name":"a","history_ttl":-1}]"#, "history_ttl"),
            (r#"[{"subscribe":"*"}]"#, "missing field `name`"),
            (r#"[{"name":"a:b"}]"#, "invalid namespace name"),
            (r#"[{"name":"a"},{"name":"a"}]"#, "twice"),
        ] {
            let err = Policy::from_json(json.as_bytes(), true).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
