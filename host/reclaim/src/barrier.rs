//! The heavy barrier: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` where the kernel
//! allows it, a `SeqCst` fence on both sides otherwise (fence mode).

use crate::sync::{fence, Ordering};
use std::sync::atomic::AtomicBool as StdAtomicBool;
use std::sync::OnceLock;

/// Whether membarrier is registered for this process (then readers fence lightly).
/// Configuration, set once before any domain exists: a std atomic even under loom.
static MEMBARRIER: StdAtomicBool = StdAtomicBool::new(false);
static MODE: OnceLock<String> = OnceLock::new();

/// Sets up membarrier once per process (unless `HOTSWAP_NO_MEMBARRIER` is set) and
/// returns how readers are fenced.
///
/// Under `cfg(loom)` it is always fence mode: loom cannot model membarrier.
pub fn init() -> &'static str {
    MODE.get_or_init(|| {
        if cfg!(loom) {
            return "fence (loom model: membarrier is modelled as the fence fallback)".to_owned();
        }
        if std::env::var_os("HOTSWAP_NO_MEMBARRIER").is_some() {
            return "fence (membarrier disabled by HOTSWAP_NO_MEMBARRIER)".to_owned();
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::thread::{membarrier, MembarrierCommand};
            match membarrier(MembarrierCommand::RegisterPrivateExpedited) {
                Ok(()) => {
                    MEMBARRIER.store(true, Ordering::SeqCst);
                    "membarrier".to_owned()
                }
                Err(e) => format!("fence (membarrier refused: {e})"),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            "fence (membarrier is Linux-only)".to_owned()
        }
    })
}

/// How readers are fenced: `membarrier`, or `fence (…why…)`.
pub fn mode() -> &'static str {
    init()
}

/// Whether readers may use the light fence (membarrier is registered).
pub(crate) fn membarrier_registered() -> bool {
    MEMBARRIER.load(Ordering::SeqCst)
}

/// The heavy barrier could not run, so nothing may be freed this time (try again
/// later; the values stay retired).
#[derive(Debug, thiserror::Error)]
#[error("membarrier failed after registration ({errno}); reclamation deferred")]
pub struct BarrierError {
    /// What `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` returned.
    #[source]
    pub errno: rustix::io::Errno,
}

/// Makes every reader's slot store that precedes this call visible to the caller:
/// membarrier (a full barrier on every CPU running one of our threads), then a
/// `SeqCst` fence, which in fence mode pairs with the readers' own `SeqCst` fences.
pub(crate) fn heavy_fence() -> Result<(), BarrierError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if membarrier_registered() {
        use rustix::thread::{membarrier, MembarrierCommand};
        membarrier(MembarrierCommand::PrivateExpedited).map_err(|errno| BarrierError { errno })?;
    }
    fence(Ordering::SeqCst);
    Ok(())
}
