//! Layout checks already passed, so that each distinct layout of a plugin file is
//! checked once: the plugin's `PluginVTable` when its file is loaded again (a rollback,
//! two builds alternating), and each typed handle's argument and result layouts when
//! the next generation resolves them again.
//!
//! abi_stable's check of one layout against another walks both type trees (about a
//! tenth of a reload, for the vtable alone). Its answer is a function of the two
//! layouts: the host's are `'static` data of the host binary (named here by address),
//! and a plugin's are static data of its file, the same wherever the file is mapped, so
//! a function of the file's bytes, which the sha256 its manifest names pins down (every
//! load checks the bytes against it, or takes them from a file already checked with it:
//! `verified`). A pass is remembered by that sha256 and the host layouts' addresses;
//! only passes are remembered (a mismatch is checked again, and explained, every time).
//! Files without a checksum (plugins linked into the host) are not remembered.

use abi_stable::type_layout::TypeLayout;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// How many passed checks are remembered (the oldest is forgotten first).
pub(crate) const REMEMBERED: usize = 256;

/// One passed check: of the plugin file `sha256`, its layout of `function` (empty for
/// the plugin's vtable) against the host's layouts at these addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Passed {
    host: [usize; 2],
    sha256: String,
    function: String,
}

/// The layout checks one manager saw pass.
#[derive(Debug)]
pub(crate) struct CheckedLayouts {
    passed: Mutex<VecDeque<Passed>>,
    /// False: nothing is remembered, every check runs (`Builder::recheck_layouts`).
    remember: bool,
}

/// What a layout check is about: the plugin file, and its layout of which function
/// against which of the host's layouts.
pub(crate) struct Check<'a> {
    /// The sha256 of the plugin file (its manifest's); empty: not remembered.
    pub sha256: &'a str,
    /// The typed function, or `""` for the plugin's vtable.
    pub function: &'a str,
    /// The host's layouts (the argument's and the result's, or the vtable's twice).
    pub host: [&'static TypeLayout; 2],
}

impl Check<'_> {
    fn key(&self) -> [usize; 2] {
        self.host
            .map(|l| std::ptr::from_ref::<TypeLayout>(l) as usize)
    }
}

impl Default for CheckedLayouts {
    fn default() -> CheckedLayouts {
        CheckedLayouts::new(true)
    }
}

impl CheckedLayouts {
    /// Checks that remember their passes, or (`remember` false) that never skip one.
    pub fn new(remember: bool) -> CheckedLayouts {
        CheckedLayouts {
            passed: Mutex::default(),
            remember,
        }
    }

    /// Runs `check` unless the same check passed before; remembers it if it passes.
    pub fn check<E>(
        &self,
        what: &Check<'_>,
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        if what.sha256.is_empty() || !self.remember {
            return check();
        }
        let host = what.key();
        let seen =
            |p: &Passed| p.host == host && p.sha256 == what.sha256 && p.function == what.function;
        if self.passed.lock().iter().any(seen) {
            return Ok(());
        }
        check()?;
        let mut passed = self.passed.lock();
        if !passed.iter().any(seen) {
            if passed.len() == REMEMBERED {
                passed.pop_front();
            }
            passed.push_back(Passed {
                host,
                sha256: what.sha256.to_owned(),
                function: what.function.to_owned(),
            });
        }
        Ok(())
    }

    /// How many passed checks are remembered.
    pub fn len(&self) -> usize {
        self.passed.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::StableAbi;
    use std::cell::Cell;

    #[test]
    fn a_passed_check_runs_once_a_failed_one_every_time_and_the_list_is_bounded() {
        let c = CheckedLayouts::default();
        let ran = Cell::new(0);
        let pass = || {
            ran.set(ran.get() + 1);
            Ok::<(), ()>(())
        };
        let fail = || {
            ran.set(ran.get() + 1);
            Err::<(), ()>(())
        };
        let u = <u64 as StableAbi>::LAYOUT;
        let s = <u32 as StableAbi>::LAYOUT;
        fn of<'a>(sha256: &'a str, function: &'a str, host: [&'static TypeLayout; 2]) -> Check<'a> {
            Check {
                sha256,
                function,
                host,
            }
        }
        assert!(c.check(&of("a", "f", [u, s]), pass).is_ok());
        assert!(c.check(&of("a", "f", [u, s]), pass).is_ok());
        assert_eq!(ran.get(), 1, "the second check was skipped");
        // Another file, function or host layout is another check.
        assert!(c.check(&of("b", "f", [u, s]), pass).is_ok());
        assert!(c.check(&of("a", "g", [u, s]), pass).is_ok());
        assert!(c.check(&of("a", "f", [s, u]), pass).is_ok());
        assert_eq!(ran.get(), 4);
        // Failures are never remembered; files without a checksum never are.
        assert!(c.check(&of("c", "f", [u, s]), fail).is_err());
        assert!(c.check(&of("c", "f", [u, s]), fail).is_err());
        assert!(c.check(&of("", "f", [u, s]), pass).is_ok());
        assert!(c.check(&of("", "f", [u, s]), pass).is_ok());
        assert_eq!(ran.get(), 8);
        assert_eq!(c.len(), 4);
        for i in 0..REMEMBERED + 5 {
            let sha = format!("f{i}");
            assert!(c.check(&of(&sha, "f", [u, s]), pass).is_ok());
        }
        assert_eq!(c.len(), REMEMBERED);
        let before = ran.get();
        assert!(c.check(&of("a", "f", [u, s]), pass).is_ok());
        assert_eq!(ran.get(), before + 1, "the oldest was forgotten");
    }

    #[test]
    fn checks_that_do_not_remember_run_every_time() {
        let c = CheckedLayouts::new(false);
        let ran = Cell::new(0);
        let u = <u64 as StableAbi>::LAYOUT;
        let what = Check {
            sha256: "a",
            function: "f",
            host: [u, u],
        };
        for _ in 0..3 {
            let pass = || {
                ran.set(ran.get() + 1);
                Ok::<(), ()>(())
            };
            assert!(c.check(&what, pass).is_ok());
        }
        assert_eq!(ran.get(), 3);
        assert_eq!(c.len(), 0);
    }
}
