//! The host-owned state that outlives generations: the DataBag here; the Extension
//! lives in each `Generation` (made by `Builder::extension_newer`), and live functions
//! are resolved in the current generation.

use hotswap_plugin_api::Value;
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::collections::BTreeMap;
use std::ffi::c_void;

/// The DataBag: a string-keyed map of stable values shared by the host and every
/// plugin. Every value in it was made by host code (writes from plugins are copied), so
/// it survives the unload of the plugin that wrote it.
#[derive(Default)]
pub struct Vault {
    bag: RwLock<BTreeMap<String, Value>>,
}

impl Vault {
    /// A copy of the value under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.bag.read().get(key).cloned()
    }

    /// Stores a copy of `value` under `key` (made by host code); `Null` removes the key.
    pub fn set(&self, key: &str, value: impl Into<Value>) {
        let value: Value = value.into();
        if value == Value::Null {
            self.bag.write().remove(key);
        } else {
            // `clone` rebuilds every allocation with the host's code.
            #[allow(clippy::redundant_clone)]
            let owned = value.clone();
            self.bag.write().insert(key.to_owned(), owned);
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.bag.write().remove(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.bag.read().keys().cloned().collect()
    }
}

/// One generation's extension: a `StableAbi` object made by the host's factory.
pub(crate) struct ExtensionObj {
    pub ptr: *const c_void,
    pub layout: &'static abi_stable::type_layout::TypeLayout,
    pub owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: `ptr` points into `owner`, which is Send + Sync.
unsafe impl Send for ExtensionObj {}
// SAFETY: as above.
unsafe impl Sync for ExtensionObj {}

impl ExtensionObj {
    pub fn new<T: abi_stable::StableAbi + Send + Sync + 'static>(value: T) -> ExtensionObj {
        let owner: Box<dyn Any + Send + Sync> = Box::new(value);
        // Taken from the box where it stays (moving a `Box` would invalidate pointers
        // derived from it before the move).
        let ptr = owner
            .downcast_ref::<T>()
            .map_or(std::ptr::null(), |t| (t as *const T).cast::<c_void>());
        ExtensionObj {
            ptr,
            layout: T::LAYOUT,
            owner,
        }
    }
}

/// The DataBag writes of one reload's versions, kept apart until the reload publishes
/// (DESIGN invariant 2: a failed reload leaves the vault untouched).
///
/// While the reload runs, a write by one of its versions is staged here; those versions
/// read their own staged writes first. [`commit`](Staging::commit) applies every staged
/// write to the DataBag at once, just before the swap; after that, the versions write
/// straight to the DataBag. [`discard`](Staging::discard) (a failed reload) drops them,
/// and later writes by those versions are refused.
pub(crate) struct Staging {
    state: Mutex<Stage>,
}

enum Stage {
    /// Staged writes; `None` removes the key.
    Open(BTreeMap<String, Option<Value>>),
    Committed,
    Discarded,
}

/// Why a staged write was refused.
pub(crate) const DISCARDED: &str =
    "the reload that loaded this version failed: its DataBag writes were discarded";

impl Staging {
    pub fn new() -> Staging {
        Staging {
            state: Mutex::new(Stage::Open(BTreeMap::new())),
        }
    }

    /// A read by one of the reload's versions: its staged value, or the DataBag's.
    pub fn get(&self, vault: &Vault, key: &str) -> Option<Value> {
        match &*self.state.lock() {
            Stage::Open(staged) => match staged.get(key) {
                Some(v) => v.clone(),
                None => vault.get(key),
            },
            _ => vault.get(key),
        }
    }

    /// A write by one of the reload's versions (`Null` removes).
    pub fn set(&self, vault: &Vault, key: &str, value: &Value) -> Result<(), &'static str> {
        match &mut *self.state.lock() {
            Stage::Open(staged) => {
                // `clone` rebuilds the value with the host's code.
                let v = (*value != Value::Null).then(|| value.clone());
                staged.insert(key.to_owned(), v);
                Ok(())
            }
            Stage::Committed => {
                vault.set(key, value.clone());
                Ok(())
            }
            Stage::Discarded => Err(DISCARDED),
        }
    }

    /// Applies every staged write to the DataBag at once (one write lock). Writes the
    /// host or the serving generation made meanwhile stay, except where the reload
    /// wrote the same key: the reload's write, committed last, wins.
    pub fn commit(&self, vault: &Vault) {
        let mut state = self.state.lock();
        if let Stage::Open(staged) = std::mem::replace(&mut *state, Stage::Committed) {
            let mut bag = vault.bag.write();
            for (k, v) in staged {
                match v {
                    Some(v) => {
                        bag.insert(k, v);
                    }
                    None => {
                        bag.remove(&k);
                    }
                }
            }
        }
    }

    /// Drops the staged writes, unless committed.
    pub fn discard(&self) {
        let mut state = self.state.lock();
        if matches!(*state, Stage::Open(_)) {
            *state = Stage::Discarded;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<Value>) -> Option<String> {
        v.and_then(|v| v.as_str().map(str::to_owned))
    }

    #[test]
    fn staged_writes_are_seen_by_their_reload_only_until_committed() {
        let vault = Vault::default();
        vault.set("kept", "old");
        vault.set("both", "host");
        let staging = Staging::new();
        staging.set(&vault, "new", &Value::from("staged")).unwrap();
        staging.set(&vault, "kept", &Value::Null).unwrap();
        // The reload's versions read their own writes; everyone else does not.
        assert_eq!(text(staging.get(&vault, "new")).as_deref(), Some("staged"));
        assert_eq!(staging.get(&vault, "kept"), None);
        assert_eq!(vault.get("new"), None);
        assert_eq!(text(vault.get("kept")).as_deref(), Some("old"));
        // The serving side writes meanwhile: kept, except where the reload wrote too.
        vault.set("host", "during");
        vault.set("both", "host again");
        staging.set(&vault, "both", &Value::from("reload")).unwrap();
        staging.commit(&vault);
        assert_eq!(text(vault.get("new")).as_deref(), Some("staged"));
        assert_eq!(vault.get("kept"), None);
        assert_eq!(text(vault.get("host")).as_deref(), Some("during"));
        assert_eq!(text(vault.get("both")).as_deref(), Some("reload"));
        // After the commit, writes go straight in; a discard no longer undoes anything.
        staging.set(&vault, "after", &Value::from(1i64)).unwrap();
        staging.discard();
        assert_eq!(vault.get("after"), Some(Value::from(1i64)));
    }

    #[test]
    fn a_discarded_reload_leaves_the_bag_untouched_and_refuses_later_writes() {
        let vault = Vault::default();
        vault.set("k", "old");
        let staging = Staging::new();
        staging.set(&vault, "k", &Value::from("new")).unwrap();
        staging.discard();
        assert_eq!(text(vault.get("k")).as_deref(), Some("old"));
        assert_eq!(
            staging.set(&vault, "k", &Value::from("late")),
            Err(DISCARDED)
        );
        assert_eq!(text(vault.get("k")).as_deref(), Some("old"));
    }
}
