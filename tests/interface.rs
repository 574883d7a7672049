//! Trait interfaces: `probe_api::Shop`, declared with `#[interface]` in an interface
//! crate, implemented by the probe plugin (`export_plugin!(.., interfaces { Shop })`),
//! called by the host through `manager.interface::<dyn Shop>("probe")`: each method a
//! typed call pinning the current generation, valid across reloads, layout-checked when
//! the handle is made.

mod common;

use common::{build, clear, install};
use hotswap_host::{CallError, Interface, PluginManager, SignaturePart, Value};
use probe_api::{Inventory, PricingError, Quote, QuoteOpts, Shop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PROBE: &str = "tests/plugins/probe";

fn probe_v1() -> (tempfile::TempDir, PluginManager) {
    common::loaded(PROBE, &[])
}

fn swap_to(dir: &std::path::Path, m: &PluginManager, features: &[&str]) {
    clear(dir);
    install(&build(PROBE, features), dir);
    m.reload(&Value::Null).unwrap();
}

#[test]
fn every_method_of_an_interface_answers_through_its_handle() {
    let (_dir, m) = probe_v1();
    let shop: Interface<dyn Shop> = m.interface::<dyn Shop>("probe").unwrap();
    let opts = QuoteOpts {
        discount_pct: 10,
        currency: "EUR".into(),
    };
    // A borrowed `&str` and `&T`, a by-value `u32`, the plugin's own `Result`.
    let sku = String::from("apple");
    assert_eq!(
        shop.quote(&sku, 3, &opts).unwrap(),
        Ok(Quote {
            cents: 135,
            qty: 3,
            version: 1
        })
    );
    assert_eq!(
        shop.quote("plum", 3, &opts).unwrap(),
        Err(PricingError::UnknownSku)
    );
    assert_eq!(shop.version().unwrap(), 1);
    assert_eq!(shop.add(41).unwrap(), 42);
    assert_eq!(shop.describe("pear").unwrap(), "pear from probe v1");
    assert_eq!(shop.reversed(b"abc").unwrap(), b"cba");
    // The trait's default body, which the plugin does not override, runs in the plugin.
    assert_eq!(shop.motto().unwrap(), "default motto");
}

#[test]
fn a_panicking_method_is_a_call_error_and_the_handle_keeps_working() {
    let (_dir, m) = probe_v1();
    let shop = m.interface::<dyn Shop>("probe").unwrap();
    for _ in 0..100 {
        let e = shop.explode("boom").unwrap_err();
        assert!(
            matches!(&e, CallError::Panicked { function, message, .. }
                if function == "Shop.explode" && message.contains("boom")),
            "{e}"
        );
    }
    assert_eq!(shop.add(1).unwrap(), 2);
}

#[test]
fn a_handle_made_before_a_reload_reaches_the_new_version() {
    let (dir, m) = probe_v1();
    let shop = m.interface::<dyn Shop>("probe").unwrap();
    let copy = shop.clone();
    assert_eq!(shop.version().unwrap(), 1);
    swap_to(dir.path(), &m, &["v2"]);
    assert_eq!(shop.version().unwrap(), 2);
    assert_eq!(copy.add(40).unwrap(), 42);
    assert_eq!(shop.describe("fig").unwrap(), "fig from probe v2");
}

#[test]
fn calls_from_many_threads_never_fail_across_reloads() {
    let (dir, m) = probe_v1();
    let shop = m.interface::<dyn Shop>("probe").unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let during_reloads = AtomicU64::new(0);
    let reloads = 20;
    let seen: Vec<[u64; 3]> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let shop = shop.clone();
                let (stop, calls) = (&stop, &calls);
                s.spawn(move || {
                    let mut seen = [0u64; 3];
                    while !stop.load(Ordering::Relaxed) {
                        // Each call answers wholly from one version: `add` and
                        // `version` agree within the version that served `add`.
                        let v = shop.version().unwrap();
                        let sum = shop.add(10).unwrap();
                        assert!(sum == 11 || sum == 12, "{sum}");
                        assert!(v == 1 || v == 2, "{v}");
                        seen[v as usize] += 1;
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();
        for i in 0..reloads {
            // Wait until the callers have made calls since the last reload (progress, not
            // time): every reload then runs while calls are in flight.
            let before = calls.load(Ordering::Relaxed);
            while calls.load(Ordering::Relaxed) < before + 50
                && !workers.iter().any(|w| w.is_finished())
            {
                std::thread::yield_now();
            }
            let at_start = calls.load(Ordering::Relaxed);
            swap_to(dir.path(), &m, if i % 2 == 0 { &["v2"] } else { &[] });
            during_reloads.fetch_add(calls.load(Ordering::Relaxed) - at_start, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let total: [u64; 3] = seen
        .iter()
        .fold([0; 3], |a, s| [0, a[1] + s[1], a[2] + s[2]]);
    assert!(
        total[1] > 0 && total[2] > 0,
        "both versions answered: {total:?}"
    );
    assert!(
        during_reloads.load(Ordering::Relaxed) > 0,
        "some calls ran while a reload was under way"
    );
}

#[test]
fn a_host_built_against_another_release_of_the_interface_is_refused_naming_the_method() {
    let (_dir, m) = probe_v1();
    let e = match m.interface::<dyn probe_api::older::Shop>("probe") {
        Ok(_) => panic!("a mismatched interface must be refused"),
        Err(e) => e,
    };
    let line = e.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.contains("probe::Shop.add") && line.contains("u64") && line.contains("u32"),
        "{line}"
    );
    match e {
        CallError::Signature {
            function, mismatch, ..
        } => {
            assert_eq!(function, "Shop.add");
            assert_eq!(mismatch.part, SignaturePart::Argument);
        }
        other => panic!("expected a signature mismatch, got {other:?}"),
    }
}

#[test]
fn an_interface_the_plugin_does_not_implement_is_refused_by_name() {
    let (_dir, m) = probe_v1();
    let e = match m.interface::<dyn Inventory>("probe") {
        Ok(_) => panic!("the probe implements no Inventory"),
        Err(e) => e,
    };
    assert!(
        matches!(&e, CallError::NotImplemented { plugin, interface, .. }
            if plugin == "probe" && interface == "Inventory"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "plugin \"probe\" does not implement the interface Inventory (it exports no Inventory.stock)"
    );
    assert!(matches!(
        m.interface::<dyn Shop>("nobody"),
        Err(CallError::UnknownPlugin(_))
    ));
}
