//! Which managers' reloads the current thread takes part in: the thread running a
//! reload (`PluginManager::reload` and the others), and the hook thread while it runs
//! that reload's hooks. Code of such a reload (a reload callback, an extension
//! factory, a subscriber given one of its events, a hook calling the host) that asks
//! the same manager for a handle needs the reload lock this reload holds: it gets
//! `CallError::InReload` instead of waiting for itself.

use std::cell::RefCell;

thread_local! {
    /// The managers whose reload this thread takes part in (see [`owner`]).
    static RELOADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A manager's identity for [`ReloadingHere`]: the address of its shared state.
pub(crate) fn owner<T>(shared: &std::sync::Arc<T>) -> usize {
    std::sync::Arc::as_ptr(shared) as usize
}

/// Marks, for as long as it lives, that this thread takes part in a reload of `owner`.
pub(crate) struct ReloadingHere(usize);

impl ReloadingHere {
    pub fn mark(owner: usize) -> ReloadingHere {
        RELOADING.with(|r| r.borrow_mut().push(owner));
        ReloadingHere(owner)
    }

    /// Whether this thread takes part in a reload of `owner`.
    pub fn is(owner: usize) -> bool {
        RELOADING.with(|r| r.borrow().contains(&owner))
    }
}

impl Drop for ReloadingHere {
    fn drop(&mut self) {
        RELOADING.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(i) = r.iter().rposition(|a| *a == self.0) {
                r.remove(i);
            }
        });
    }
}
