//! Conversions between `engram.v1` messages and engine types; bad enum values are
//! `INVALID_ARGUMENT` errors naming the field.

use crate::proto;
use engram_engine::{
    BackpressureLevel, Batch, EngineError, IndexKind, Metric, Observation, Priority, Quantization, SpaceInfo,
    SpaceParams,
};

fn invalid(field: &str, reason: String) -> EngineError {
    EngineError::InvalidArgument { field: field.to_owned(), reason }
}

pub(super) fn level(l: BackpressureLevel) -> i32 {
    l as i32
}

pub(super) fn batch(b: proto::ObservationBatch) -> Result<Batch, EngineError> {
    let priority = match proto::Priority::try_from(b.priority) {
        Ok(proto::Priority::High) => Priority::High,
        Ok(proto::Priority::Normal | proto::Priority::Unspecified) => Priority::Normal,
        Ok(proto::Priority::Low) => Priority::Low,
        Err(_) => {
            return Err(invalid(
                "priority",
                format!("unknown value {}, expected PRIORITY_HIGH, PRIORITY_NORMAL or PRIORITY_LOW", b.priority),
            ));
        }
    };
    let observations = b
        .observations
        .into_iter()
        .map(|o| Observation { id: o.id, embedding: o.embedding, content: o.content })
        .collect();
    Ok(Batch { upsert: b.upsert, priority, observations })
}

fn or_default(v: u64, default: usize) -> usize {
    if v == 0 { default } else { v as usize }
}

pub(super) fn space_params(p: proto::SpaceParams) -> Result<SpaceParams, EngineError> {
    let metric = match proto::Metric::try_from(p.metric) {
        Ok(proto::Metric::Cosine | proto::Metric::Unspecified) => Metric::Cosine,
        Ok(proto::Metric::L2) => Metric::L2,
        Ok(proto::Metric::Dot) => Metric::Dot,
        Err(_) => {
            return Err(invalid("params.metric", format!("unknown value {}", p.metric)));
        }
    };
    let index = match proto::IndexBackend::try_from(p.index) {
        Ok(proto::IndexBackend::Unspecified) => None,
        Ok(proto::IndexBackend::HnswRs) => Some(IndexKind::HnswRs),
        Ok(proto::IndexBackend::Usearch) => Some(IndexKind::Usearch),
        Ok(proto::IndexBackend::Engram) => Some(IndexKind::Engram),
        Err(_) => {
            return Err(invalid("params.index", format!("unknown value {}", p.index)));
        }
    };
    let quantization = match proto::Quantization::try_from(p.quantization) {
        Ok(proto::Quantization::Unspecified) => None,
        Ok(proto::Quantization::None) => Some(Quantization::None),
        Ok(proto::Quantization::F16) => Some(Quantization::F16),
        Ok(proto::Quantization::Bf16) => Some(Quantization::Bf16),
        Ok(proto::Quantization::I8) => Some(Quantization::I8),
        Err(_) => {
            return Err(invalid("params.quantization", format!("unknown value {}", p.quantization)));
        }
    };
    let d = SpaceParams::with_dim(p.dim as usize);
    Ok(SpaceParams {
        dim: p.dim as usize,
        metric,
        index,
        m: or_default(p.m.into(), d.m),
        ef_construction: or_default(p.ef_construction.into(), d.ef_construction),
        ef_search: or_default(p.ef_search.into(), d.ef_search),
        max_elements: or_default(p.max_elements, d.max_elements),
        quantization,
        rescore_factor: or_default(p.rescore_factor.into(), d.rescore_factor),
    })
}

/// The wire form of a quantization (also what a client such as `load` sends to create a space).
impl From<Quantization> for proto::Quantization {
    fn from(q: Quantization) -> Self {
        match q {
            Quantization::None => proto::Quantization::None,
            Quantization::F16 => proto::Quantization::F16,
            Quantization::Bf16 => proto::Quantization::Bf16,
            Quantization::I8 => proto::Quantization::I8,
        }
    }
}

/// The wire form of an index backend (also what a client such as `load` sends to create a
/// space).
impl From<IndexKind> for proto::IndexBackend {
    fn from(kind: IndexKind) -> Self {
        match kind {
            IndexKind::HnswRs => proto::IndexBackend::HnswRs,
            IndexKind::Usearch => proto::IndexBackend::Usearch,
            IndexKind::Engram => proto::IndexBackend::Engram,
        }
    }
}

pub(super) fn space_info(i: SpaceInfo) -> proto::SpaceInfo {
    let metric = match i.params.metric {
        Metric::Cosine => proto::Metric::Cosine,
        Metric::L2 => proto::Metric::L2,
        Metric::Dot => proto::Metric::Dot,
    };
    proto::SpaceInfo {
        memory_space: i.name,
        params: Some(proto::SpaceParams {
            dim: i.params.dim as u32,
            metric: metric as i32,
            m: i.params.m as u32,
            ef_construction: i.params.ef_construction as u32,
            ef_search: i.params.ef_search as u32,
            max_elements: i.params.max_elements as u64,
            index: proto::IndexBackend::from(i.params.index()) as i32,
            quantization: proto::Quantization::from(i.params.quantization()) as i32,
            rescore_factor: i.params.rescore_factor as u32,
        }),
        vectors: i.vectors as u64,
        pending: i.pending as u64,
        memory_bytes: i.memory_bytes as u64,
        level: level(i.backpressure),
    }
}
