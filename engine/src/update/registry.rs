//! [`Registry`]: the memory spaces that exist, by name.

use crate::error::EngineError;
use crate::space::Space;
use crate::sync::{AtomicUsize, Ordering, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// The space registry. Lookups take a shared lock for a map read and an `Arc` clone; creation
/// and drop take it exclusively (they are rare).
#[derive(Default)]
pub(crate) struct Registry {
    spaces: RwLock<HashMap<String, Arc<Space>>>,
    /// Spaces that exist, readable without the lock (each space's share of the queue).
    count: AtomicUsize,
}

impl Registry {
    /// The space named `name`.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Space>, EngineError> {
        self.spaces.read().get(name).cloned().ok_or_else(|| EngineError::SpaceNotFound(name.to_owned()))
    }

    /// Every space, in no order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Space>> {
        self.spaces.read().values().cloned().collect()
    }

    /// Spaces that exist.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Runs `f` with the map locked for writing, then publishes the new count. Creation and
    /// drop happen inside, so a name is checked and taken (or freed) atomically.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut HashMap<String, Arc<Space>>) -> R) -> R {
        let mut spaces = self.spaces.write();
        let out = f(&mut spaces);
        self.count.store(spaces.len(), Ordering::Release);
        out
    }
}
