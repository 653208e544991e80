//! The in-memory [`LockStore`]: the conformance suite's and the tests' store, and an
//! embedder's when it runs several engines in one process. Behind the `conformance` feature
//! (and in this crate's own tests), so that a default build of `qhub-core` carries no test
//! doubles.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{LockRecord, LockStore, Version};
use crate::error::ProviderError;

/// A [`LockStore`] in memory, for tests and for embedders running several engines in one
/// process. It can be told to fail its next calls with a retryable error.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    object: Option<(Vec<u8>, u64)>,
    next_version: u64,
    failures: u32,
    lose_write: bool,
    calls: u32,
    /// Says it does not document conditional writes ([`LockStore::documents_conditional_writes`]).
    undocumented: bool,
    /// Carries out conditional writes whatever their condition (a store that ignores them).
    careless: bool,
    /// Calls from this number on fail, this many of them.
    fail_from: Option<(u32, u32)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose documentation is silent about conditional writes, so that [`acquire`](super::acquire)
    /// checks them; `careless`: one that ignores their conditions, which the check must catch.
    pub fn undocumented(careless: bool) -> Self {
        let store = Self::default();
        store.with(|s| {
            s.undocumented = true;
            s.careless = careless;
        });
        store
    }

    /// The object's body, if it exists.
    pub fn body(&self) -> Option<Vec<u8>> {
        self.with(|s| s.object.as_ref().map(|(b, _)| b.clone()))
    }

    /// The record in the object, if it exists and parses.
    pub fn record(&self) -> Option<LockRecord> {
        self.body().and_then(|b| LockRecord::parse(&b))
    }

    /// Writes the object unconditionally (a test's "someone else's record").
    pub fn put(&self, body: &[u8]) {
        self.with(|s| {
            s.next_version += 1;
            s.object = Some((body.to_vec(), s.next_version));
        });
    }

    /// Makes the next `n` calls fail with a retryable error.
    pub fn fail_next(&self, n: u32) {
        self.with(|s| s.failures = n);
    }

    /// Makes `n` calls fail with a retryable error, from the `first`-th call this store
    /// answers (counting from 1, as [`Self::calls`] does).
    pub fn fail_calls(&self, first: u32, n: u32) {
        self.with(|s| s.fail_from = Some((first, n)));
    }

    /// Carries out the next write (create, replace, delete) but answers it with a retryable
    /// error, as when the answer is lost on the way back.
    pub fn lose_next_write(&self) {
        self.with(|s| s.lose_write = true);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u32 {
        self.with(|s| s.calls)
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn call<T>(
        &self,
        write: bool,
        f: impl FnOnce(&mut MemoryState) -> T,
    ) -> Result<T, ProviderError> {
        self.with(|s| {
            s.calls += 1;
            if let Some((first, n)) = s.fail_from
                && s.calls >= first
                && s.calls < first + n
            {
                return Err(ProviderError::retryable("injected failure"));
            }
            if s.failures > 0 {
                s.failures -= 1;
                return Err(ProviderError::retryable("injected failure"));
            }
            let out = f(s);
            if write && s.lose_write {
                s.lose_write = false;
                return Err(ProviderError::retryable("injected lost answer"));
            }
            Ok(out)
        })
    }
}

#[async_trait]
impl LockStore for MemoryStore {
    fn location(&self) -> String {
        "memory://lock".into()
    }

    async fn get(&self) -> Result<Option<(Vec<u8>, Version)>, ProviderError> {
        self.call(false, |s| {
            s.object.as_ref().map(|(b, v)| (b.clone(), v.to_string()))
        })
    }

    fn documents_conditional_writes(&self) -> bool {
        !self.with(|s| s.undocumented)
    }

    async fn create(&self, body: &[u8]) -> Result<Option<Version>, ProviderError> {
        self.call(true, |s| {
            if s.object.is_some() && !s.careless {
                return None;
            }
            s.next_version += 1;
            s.object = Some((body.to_vec(), s.next_version));
            Some(s.next_version.to_string())
        })
    }

    async fn replace(&self, body: &[u8], version: &str) -> Result<Option<Version>, ProviderError> {
        self.call(true, |s| match &s.object {
            Some((_, v)) if v.to_string() == version || s.careless => {
                s.next_version += 1;
                s.object = Some((body.to_vec(), s.next_version));
                Some(s.next_version.to_string())
            }
            _ => None,
        })
    }

    async fn delete(&self, version: &str) -> Result<bool, ProviderError> {
        self.call(true, |s| match &s.object {
            Some((_, v)) if v.to_string() == version || s.careless => {
                s.object = None;
                true
            }
            _ => false,
        })
    }
}
