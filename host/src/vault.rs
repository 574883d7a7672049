//! The host-owned state that outlives generations: the DataBag here; the Extension
//! lives in each `Generation` (made by `Builder::extension_newer`), and live functions
//! are resolved in the current generation.

use hotswap_plugin_api::Value;
use parking_lot::RwLock;
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
        let owner: Box<T> = Box::new(value);
        let ptr = (&*owner as *const T).cast::<c_void>();
        ExtensionObj {
            ptr,
            layout: T::LAYOUT,
            owner,
        }
    }
}
