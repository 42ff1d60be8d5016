//! [`Operation`]: one change to the engine's state, in the form a log would record it.
//!
//! Admission turns a client's [`Batch`](crate::Batch) into an [`Operation::Insert`] once it is
//! validated, deduplicated and admitted by backpressure: embeddings prepared for the space's
//! metric (normalised for cosine), content moved out of the request. The update path then
//! applies it (today: queue it for the workers, which insert into the space's index). An
//! operation names its space by name and carries no pointer, clock or channel, so it can be
//! serialised; [`Operation::seq`] is the place for the position a log assigns it (unset until
//! the engine has a log).
//!
//! An insert batch with `upsert` set replaces the vector and content of ids the space holds;
//! [`Operation::Delete`] removes ids. Space creation and drop are recorded by the store apart
//! from operations.

use crate::observation::Priority;
use serde::{Deserialize, Serialize};

/// A position in the engine's order of operations (a log sequence number once there is a log).
pub type Seq = u64;

/// One change to a memory space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// New observations for a space's index (or, with `upsert`, replacements).
    Insert(InsertBatch),
    /// Observations removed from a space.
    Delete(DeleteBatch),
}

impl Operation {
    /// The memory space the operation changes.
    pub fn space(&self) -> &str {
        match self {
            Self::Insert(b) => &b.space,
            Self::Delete(b) => &b.space,
        }
    }

    /// The operation's position in the engine's order, once one is assigned (by the log, or by
    /// the engine's own counter without a store).
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Self::Insert(b) => b.seq,
            Self::Delete(b) => b.seq,
        }
    }
}

/// Observations admitted together into one space, with one priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertBatch {
    /// The memory space's name.
    pub space: String,
    /// Position in the engine's order of operations; `None` until a log assigns it.
    pub seq: Option<Seq>,
    /// The lane every record is queued in.
    pub priority: Priority,
    /// True when the records replace ids the space may already hold (their vector and
    /// content); false for plain inserts, whose ids were new to the space when admitted.
    #[serde(default)]
    pub upsert: bool,
    /// The observations, ids unique within the batch.
    pub records: Vec<Record>,
}

/// Ids removed from one space together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteBatch {
    /// The memory space's name.
    pub space: String,
    /// Position in the engine's order of operations; `None` until one is assigned.
    pub seq: Option<Seq>,
    /// The ids, unique within the batch; each one the space held when the delete was admitted.
    pub ids: Vec<u64>,
}

/// One observation as admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Client-assigned id, unique within the space.
    pub id: u64,
    /// The embedding as the index stores it: `dim` values, prepared for the space's metric
    /// (unit length for cosine).
    pub vector: Box<[f32]>,
    /// Optional UTF-8 content returned by recall.
    pub content: Option<Box<str>>,
}

/// How far an admitted batch has come, the levels a client can wait for. Each level implies
/// the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckLevel {
    /// Admitted to the queue: the engine holds it in memory and will insert it.
    Accepted,
    /// Recorded in the log per the store's durability mode (`fsync`: on disk; `os`: handed to
    /// the OS; `none`: the same as accepted). The default.
    #[default]
    Durable,
    /// Recorded (as [`AckLevel::Durable`]) and inserted into its space's index: recall finds it.
    Indexed,
}

impl AckLevel {
    /// The lowercase name (`accepted`, `durable`, `indexed`), as in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Durable => "durable",
            Self::Indexed => "indexed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_round_trips_through_serde_and_names_its_space() {
        let op = Operation::Insert(InsertBatch {
            space: "s".into(),
            seq: None,
            priority: Priority::High,
            upsert: false,
            records: vec![Record { id: 7, vector: vec![1.0, 0.0].into(), content: Some("x".into()) }],
        });
        let json = serde_json::to_string(&op).unwrap();
        let back: Operation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, op);
        assert_eq!(back.space(), "s");
        assert_eq!(back.seq(), None);
        assert!(AckLevel::Indexed > AckLevel::Durable && AckLevel::Durable > AckLevel::Accepted);
    }
}
