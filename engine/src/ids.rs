//! Identifiers: one type per kind of id, so that a job id cannot be passed where an instance
//! id is meant.
//!
//! | type | names | `Display` |
//! |---|---|---|
//! | [`AppId`] | an app of a server | `app 7` |
//! | [`JobId`] | a job of a server or an embedded scheduler | `job 7` |
//! | [`InstanceId`] | one run (instance) of a job | `instance 7` |
//! | [`WorkflowId`] | a workflow of a server | `workflow 7` |
//! | [`WorkflowInstanceId`] | one run of a workflow | `workflow instance 7` |
//! | [`NodeId`] | a node within one workflow definition | `node 7` |
//!
//! Every id is a `u64` underneath and is encoded exactly as that `u64`: a bare number in JSON
//! (`#[serde(transparent)]`), and in an rkyv archive a struct whose one field is the
//! little-endian `u64`, byte for byte the archive of the number itself. So replacing a `u64`
//! field of a stored record or a JSON body with an id changes no byte on disk, on the wire or
//! in the HTTP API (tested below). `FromStr` parses the bare decimal number, as it appears in
//! a URL path or on a command line; `Display` prefixes the kind, for messages. The `Default`
//! id is 0, which no server assigns (its counters start at 1): a placeholder until the
//! store assigns one.

// rkyv's derive adds a public resolver type per id (`JobIdResolver`, ...) without `Debug`;
// expanded from `ids!` it is linted here. Every type this file writes derives `Debug`.
#![allow(missing_debug_implementations)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A text that is not an id: it must be a decimal `u64` (no sign, no spaces).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid {kind} id: `{text}` is not a non-negative integer")]
pub struct ParseIdError {
    /// The kind of id that was expected, e.g. `"job"`.
    pub kind: &'static str,
    /// The text that was refused.
    pub text: String,
}

/// Defines each id type with the same derives and impls; `$kind` is the word `Display` and
/// [`ParseIdError`] use.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident => $kind:literal;)*) => {$(
        $(#[$doc])*
        #[derive(
            Clone,
            Copy,
            Debug,
            Default,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Serialize,
            Deserialize,
            rkyv::Archive,
            rkyv::Serialize,
            rkyv::Deserialize,
        )]
        #[serde(transparent)]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        pub struct $name(pub u64);

        impl $name {
            /// The id with this number.
            pub const fn new(id: u64) -> $name {
                $name(id)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($kind, " {}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(text: &str) -> Result<$name, ParseIdError> {
                text.parse::<u64>().map($name).map_err(|_| ParseIdError {
                    kind: $kind,
                    text: text.to_owned(),
                })
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    )*};
}

ids! {
    /// Identifies an app within one server.
    AppId => "app";
    /// Identifies a job within one scheduler (embedded) or one server.
    JobId => "job";
    /// Identifies one run (instance) of a job; unique within one scheduler or server.
    InstanceId => "instance";
    /// Identifies a workflow within one server.
    WorkflowId => "workflow";
    /// Identifies one run of a workflow within one server.
    WorkflowInstanceId => "workflow instance";
    /// Identifies a node within one workflow definition (chosen by the definition's author).
    NodeId => "node";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        assert_eq!(JobId(7).to_string(), "job 7");
        assert_eq!(InstanceId(7).to_string(), "instance 7");
        assert_eq!(AppId(7).to_string(), "app 7");
        assert_eq!(WorkflowInstanceId(7).to_string(), "workflow instance 7");
        assert_eq!("42".parse::<NodeId>(), Ok(NodeId(42)));
        assert_eq!(WorkflowId::new(3).get(), 3);
        let err = "-1".parse::<WorkflowId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid workflow id: `-1` is not a non-negative integer"
        );
        assert!("".parse::<JobId>().is_err());
        assert!(" 1".parse::<JobId>().is_err());
        assert!("18446744073709551616".parse::<JobId>().is_err());
        assert_eq!("18446744073709551615".parse::<JobId>(), Ok(JobId(u64::MAX)));
    }

    #[test]
    fn json_is_the_bare_number() {
        assert_eq!(serde_json::to_string(&InstanceId(9)).unwrap(), "9");
        assert_eq!(serde_json::from_str::<AppId>("9").unwrap(), AppId(9));
        assert!(serde_json::from_str::<AppId>("\"9\"").is_err());
        assert!(serde_json::from_str::<AppId>("-9").is_err());
    }

    /// Records stored before the ids were types hold `u64`s: the archives must be the same.
    #[test]
    fn archive_is_the_bare_number() {
        use rkyv::rancor::Error;

        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct Old {
            id: u64,
            parent: Option<u64>,
            ancestors: Vec<u64>,
        }
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
        struct New {
            id: WorkflowInstanceId,
            parent: Option<WorkflowInstanceId>,
            ancestors: Vec<WorkflowId>,
        }
        let old = Old {
            id: 0x0102_0304_0506_0708,
            parent: Some(5),
            ancestors: vec![1, u64::MAX],
        };
        let new = New {
            id: WorkflowInstanceId(0x0102_0304_0506_0708),
            parent: Some(WorkflowInstanceId(5)),
            ancestors: vec![WorkflowId(1), WorkflowId(u64::MAX)],
        };
        let old_bytes = rkyv::to_bytes::<Error>(&old).unwrap();
        assert_eq!(
            old_bytes.as_slice(),
            rkyv::to_bytes::<Error>(&new).unwrap().as_slice()
        );
        assert_eq!(rkyv::from_bytes::<New, Error>(&old_bytes).unwrap(), new);
        for id in [0, 1, u64::MAX] {
            assert_eq!(
                rkyv::to_bytes::<Error>(&id).unwrap().as_slice(),
                rkyv::to_bytes::<Error>(&JobId(id)).unwrap().as_slice()
            );
        }
    }
}
