//! Observations, priorities and batches: what clients send.

use serde::{Deserialize, Serialize};

/// Priority lane of a batch. `High` is admitted longest under backpressure.
/// Indices (`as usize`) match `engram_telemetry::labels::PRIORITIES`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Admitted until the queue's hard cap.
    High = 0,
    /// Shed in Overloaded.
    #[default]
    Normal = 1,
    /// Shed in Critical and Overloaded.
    Low = 2,
}

impl Priority {
    /// All priorities, highest first (lane order).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lane index (0 high, 1 normal, 2 low).
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name (`high`, `normal`, `low`).
    pub fn as_str(self) -> &'static str {
        engram_telemetry::labels::PRIORITIES[self as usize]
    }
}

/// One observation: a client-assigned id unique within its space, an embedding of the space's
/// dimension, and optional UTF-8 content returned by recall.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// Client-assigned id, unique within the space. Re-sending an accepted id is acknowledged
    /// as a duplicate and not inserted again, unless the batch is an upsert.
    pub id: u64,
    /// The embedding: exactly `dim` finite `f32` values.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub embedding: Vec<f32>,
    /// Optional text, at most `max_content_bytes` bytes of UTF-8.
    #[serde(default)]
    pub content: Option<String>,
}

/// A batch for one memory space, admitted or rejected as a whole.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Lane for every observation of the batch.
    #[serde(default)]
    pub priority: Priority,
    /// The observations, 1 to `max_batch_observations` of them.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub observations: Vec<Observation>,
    /// Replace the vector and content of ids the space holds (and insert the others). Without
    /// it (the default), ids the space holds are acknowledged as duplicates and left as they
    /// are. Operations on one id apply in the order they were admitted, across restarts too.
    #[serde(default)]
    pub upsert: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_names_match_serde_and_exported_labels() {
        for p in Priority::ALL {
            assert_eq!(engram_telemetry::labels::PRIORITIES[p.index()], p.as_str());
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        let err = serde_json::from_str::<Priority>("\"urgent\"").unwrap_err().to_string();
        assert!(err.contains("unknown variant `urgent`"), "{err}");
    }
}
