//! The protocol's messages: plain Rust structs with rkyv (wire) and serde derives.
//!
//! Each frame carries exactly one message; the frame header's `kind` says which struct the
//! payload archives, so the payload is the archived struct itself with no enum tag.
//! Ids are `u64`, times are `i64` epoch milliseconds, durations carry their unit in the name.
//!
//! | kind | message | direction |
//! |---:|---|---|
//! | 1 | [`HandshakeChallenge`] | server → client |
//! | 2 | [`Handshake`] | client → server |
//! | 3 | [`HandshakeAccepted`] | server → client |
//! | 4 | [`Ping`] | either |
//! | 5 | [`Pong`] | either (answer to ping) |
//! | 6 | [`Ack`] | either (answer) |
//! | 7 | [`ErrorReply`] | either (answer) |
//! | 8 | [`Close`] | either (last frame) |
//! | 16 | [`WorkerHeartbeat`] | worker → server |
//! | 17 | [`ScheduleJob`] | server → worker |
//! | 18 | [`StopInstance`] | server → worker |
//! | 19 | [`QueryInstanceStatus`] | server → worker (request) |
//! | 20 | [`InstanceStatusReply`] | worker → server (answer) |
//! | 21 | [`ReportInstanceStatus`] | worker → server |
//! | 22 | [`LogBatch`] | worker → server |
//! | 23 | [`QueryExecutorCluster`] | worker → server (request) |
//! | 24 | [`ExecutorCluster`] | server → worker (answer) |
//! | 32 | [`StartTask`] | TaskTracker → ProcessorTracker |
//! | 33 | [`TrackerStopInstance`] | TaskTracker → ProcessorTracker |
//! | 34 | [`ReportTaskStatus`] | ProcessorTracker → TaskTracker |
//! | 37 | [`StartTasks`] | TaskTracker → ProcessorTracker (MAP/MAP_REDUCE, a batch) |
//! | 38 | [`ReportTaskStatuses`] | ProcessorTracker → TaskTracker (outcomes + load) |
//! | 39 | [`MapTasks`] | ProcessorTracker → TaskTracker (request, answered by `Ack`) |
//!
//! Codes 35 and 36 are retired (a periodic tracker status and a per-task map request, both
//! replaced by kinds 38 and 39) and never reused: a peer that sends them gets an unknown-kind
//! error.
//!
//! MAP/MAP_REDUCE tasks travel in batches (kinds 37–39): a million tasks cannot each carry
//! a whole `ScheduleJob` as `StartTask` does. Every task outcome carries the dispatch number
//! it answers, so that a late outcome of an earlier dispatch is ignored. Senders split
//! batches so that each fits one frame (`DEFAULT_MAX_PAYLOAD_LEN`, 4 MiB).
//!
//! Validation uses rkyv's low-level validator (bounds, alignment, overlapping claims, enum
//! tags, UTF-8, bytecheck on every field) without the shared-pointer registry of the high-level
//! one: no message contains `Rc`/`Arc`, and a type that did would not compile against it.
//!
//! Versioning: the frame header carries [`crate::frame::PROTOCOL_VERSION`]; a change to any
//! struct here (or to rkyv's pinned format features) is a new protocol version.

mod common;
mod control;
pub mod samples;
mod server;
mod tracker;

pub use common::{
    AlarmConfig, ContextEntry, ErrorCode, ExecuteType, InstanceStatus, LogConfig, LogLevel,
    LogType, ProcessorType, SystemMetrics, TaskStatus, TimeExpressionType,
};
pub use control::{
    Ack, Close, ErrorReply, Handshake, HandshakeAccepted, HandshakeChallenge, Ping, Pong, NONCE_LEN,
};
pub use server::{
    ExecutorCluster, InstanceStatusReply, LogBatch, LogEntry, LogField, QueryExecutorCluster,
    QueryInstanceStatus, ReportInstanceStatus, ScheduleJob, StopInstance, WorkerHeartbeat,
};
pub use tracker::{
    MapTasks, ReportTaskStatus, ReportTaskStatuses, StartTask, StartTasks, TaskOutcome, TaskSpec,
    TrackerStopInstance,
};

macro_rules! messages {
    ($($code:literal => $name:ident),* $(,)?) => {
        /// The kind of a frame's payload: which message struct it archives.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum MessageKind {
            $(
                #[doc = concat!("[`", stringify!($name), "`]")]
                $name = $code,
            )*
        }

        impl MessageKind {
            /// Every kind, in wire-code order.
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$name),*];

            /// The kind with wire code `code`, if there is one.
            pub fn from_code(code: u16) -> Option<MessageKind> {
                match code {
                    $($code => Some(MessageKind::$name),)*
                    _ => None,
                }
            }

            /// The wire code.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The message struct's name, for errors and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(MessageKind::$name => stringify!($name),)*
                }
            }

            /// Validates `payload` as an archived message of this kind (bytecheck), without
            /// deserializing it. `payload` must start at a 16-byte aligned address.
            pub fn validate(self, payload: &[u8]) -> Result<(), rkyv::rancor::Error> {
                match self {
                    $(MessageKind::$name => {
                        rkyv::api::low::access::<rkyv::Archived<$name>, rkyv::rancor::Error>(payload)
                            .map(|_| ())
                    })*
                }
            }
        }

        impl std::fmt::Display for MessageKind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", self.name(), self.code())
            }
        }

        /// Any protocol message.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[allow(missing_docs)]
        pub enum Message {
            $($name($name),)*
        }

        impl Message {
            /// Which kind this is (the frame header's `kind`).
            pub fn kind(&self) -> MessageKind {
                match self {
                    $(Message::$name(_) => MessageKind::$name,)*
                }
            }

            /// Archives the inner struct through `writer`.
            pub(crate) fn archive_into(
                &self,
                writer: crate::frame::PayloadWriter<'_>,
            ) -> Result<(), rkyv::rancor::Error> {
                match self {
                    $(Message::$name(m) => rkyv::util::with_arena(|arena| {
                        rkyv::api::low::to_bytes_in_with_alloc::<_, _, rkyv::rancor::Error>(
                            m,
                            writer,
                            arena.acquire(),
                        )
                        .map(|_| ())
                    }),)*
                }
            }

            /// Validates (bytecheck) and deserializes a payload of `kind`.
            /// `payload` must start at a 16-byte aligned address (a frame's payload does).
            pub fn decode(kind: MessageKind, payload: &[u8]) -> Result<Message, rkyv::rancor::Error> {
                match kind {
                    $(MessageKind::$name => {
                        rkyv::api::low::from_bytes::<$name, rkyv::rancor::Error>(payload)
                            .map(Message::$name)
                    })*
                }
            }
        }

        $(
            impl From<$name> for Message {
                fn from(m: $name) -> Message {
                    Message::$name(m)
                }
            }
        )*
    };
}

messages! {
    1 => HandshakeChallenge,
    2 => Handshake,
    3 => HandshakeAccepted,
    4 => Ping,
    5 => Pong,
    6 => Ack,
    7 => ErrorReply,
    8 => Close,
    16 => WorkerHeartbeat,
    17 => ScheduleJob,
    18 => StopInstance,
    19 => QueryInstanceStatus,
    20 => InstanceStatusReply,
    21 => ReportInstanceStatus,
    22 => LogBatch,
    23 => QueryExecutorCluster,
    24 => ExecutorCluster,
    32 => StartTask,
    33 => TrackerStopInstance,
    34 => ReportTaskStatus,
    37 => StartTasks,
    38 => ReportTaskStatuses,
    39 => MapTasks,
}

impl MessageKind {
    /// Whether this kind belongs to the connection itself (handshake, keep-alive, close)
    /// rather than to the application.
    pub fn is_control(self) -> bool {
        matches!(
            self,
            MessageKind::HandshakeChallenge
                | MessageKind::Handshake
                | MessageKind::HandshakeAccepted
                | MessageKind::Ping
                | MessageKind::Pong
                | MessageKind::Close
        )
    }
}
