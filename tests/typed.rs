//! Typed functions with ordinary signatures: several arguments, borrowed `&str`, `&[u8]`
//! and `&T`, owned results (`String`, `Vec`, `Option`, `Result<T, E>` with the plugin's
//! own `E`), across threads and reloads; signature mismatches refused in one line when
//! the handle is made; a panic is a `CallError`.

mod common;

use common::{build, clear, install};
use hotswap_host::{CallError, Func, PluginManager, SignaturePart, Value};
use probe_api::{OtherError, OtherOpts, PricingError, Quote, QuoteOpts, Receipt};
use std::sync::Barrier;

const PROBE: &str = "tests/plugins/probe";

type QuoteFn = Func<(&'static str, u32, &'static QuoteOpts), Result<Quote, PricingError>>;

fn probe_v1() -> (tempfile::TempDir, PluginManager) {
    common::loaded(PROBE, &[])
}

fn opts(discount_pct: u32) -> QuoteOpts {
    QuoteOpts {
        discount_pct,
        currency: "EUR".into(),
    }
}

#[test]
fn ordinary_signatures_cross_with_borrowed_arguments_and_owned_results() {
    let (_dir, m) = probe_v1();
    let quote: QuoteFn = m.func("probe", "quote").unwrap();
    // The arguments borrow locals: the handle's `'static` names only the type.
    let sku = String::from("apple");
    let o = opts(10);
    assert_eq!(
        quote.call((&sku, 3, &o)).unwrap(),
        Ok(Quote {
            cents: 135,
            qty: 3,
            version: 1
        })
    );
    // The plugin's own error comes back typed, inside the `Ok` of the call.
    assert_eq!(
        quote.call(("plum", 3, &o)).unwrap(),
        Err(PricingError::UnknownSku)
    );
    assert_eq!(
        quote.call(("apple", 0, &o)).unwrap(),
        Err(PricingError::ZeroQuantity)
    );

    let label = m
        .func::<(&str, u32, &QuoteOpts), String>("probe", "label")
        .unwrap();
    assert_eq!(label.call(("pear", 2, &o)).unwrap(), "v1:pear x2 EUR");

    let repeat = m.func::<(&str, u32), String>("probe", "repeat").unwrap();
    assert_eq!(repeat.call(("ab", 3)).unwrap(), "ababab");

    let sum4 = m.func::<(u64, u64, u32, u8), u64>("probe", "sum4").unwrap();
    assert_eq!(sum4.call((1, 2, 3, 4)).unwrap(), 10);

    let reversed = m.func::<(&[u8],), Vec<u8>>("probe", "reversed").unwrap();
    assert_eq!(reversed.call((&[1u8, 2, 3][..],)).unwrap(), vec![3, 2, 1]);

    let words = m
        .func::<(&str,), Option<Vec<String>>>("probe", "words")
        .unwrap();
    assert_eq!(
        words.call(("hot swap",)).unwrap(),
        Some(vec!["hot".to_owned(), "swap".to_owned()])
    );
    assert_eq!(words.call(("  ",)).unwrap(), None);

    let version = m.func::<(), String>("probe", "version_text").unwrap();
    assert_eq!(version.call(()).unwrap(), "v1");

    // The single-`Pod` handles of before are unchanged.
    let add_one = m.func::<u64, u64>("probe", "add_one").unwrap();
    assert_eq!(add_one.call(41).unwrap(), 42);
}

#[test]
fn owned_results_outlive_the_version_that_made_them() {
    let (dir, m) = probe_v1();
    let label = m
        .func::<(&str, u32, &QuoteOpts), String>("probe", "label")
        .unwrap();
    let words = m
        .func::<(&str,), Option<Vec<String>>>("probe", "words")
        .unwrap();
    let receipt = m.func::<(&str, u32), Receipt>("probe", "receipt").unwrap();
    let text = label.call(("apple", 1, &opts(0))).unwrap();
    let list = words.call(("a b c",)).unwrap().unwrap();
    let r = receipt.call(("pear", 2)).unwrap();
    // Replace v1 and unload it: the host-owned copies stay valid.
    clear(dir.path());
    install(&build(PROBE, &["v2"]), dir.path());
    m.reload(&Value::Null).unwrap();
    assert!(m.collect(std::time::Duration::from_secs(10)), "v1 unloaded");
    assert_eq!(text, "v1:apple x1 EUR");
    assert_eq!(list.join(","), "a,b,c");
    // A struct with owned fields, copied field by field by host code.
    assert_eq!(r.text.as_str(), "v1: 2 x pear");
    assert_eq!(
        r.lines.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        ["pear #1", "pear #2"]
    );
    assert_eq!(r.cents, 100);
    drop((text, list, r));
}

#[test]
fn calls_from_many_threads_and_across_a_reload_get_each_versions_answer() {
    let (dir, m) = probe_v1();
    let quote: QuoteFn = m.func("probe", "quote").unwrap();
    let label = m
        .func::<(&str, u32, &QuoteOpts), String>("probe", "label")
        .unwrap();
    let threads = 4;
    let run = |version: u32, start: &Barrier| {
        std::thread::scope(|s| {
            for t in 0..threads {
                let (quote, label) = (quote.clone(), label.clone());
                s.spawn(move || {
                    start.wait();
                    let o = opts(0);
                    for i in 1..=200u32 {
                        let sku = if (i + t) % 2 == 0 { "apple" } else { "pear" };
                        let q = quote.call((sku, i, &o)).unwrap().unwrap();
                        assert_eq!((q.qty, q.version), (i, version));
                        let l = label.call((sku, i, &o)).unwrap();
                        assert_eq!(l, format!("v{version}:{sku} x{i} EUR"));
                    }
                });
            }
        });
    };
    run(1, &Barrier::new(threads as usize));
    clear(dir.path());
    install(&build(PROBE, &["v2"]), dir.path());
    m.reload(&Value::Null).unwrap();
    // The same handles now reach version 2, whose apples cost 60.
    assert_eq!(
        quote.call(("apple", 1, &opts(0))).unwrap(),
        Ok(Quote {
            cents: 60,
            qty: 1,
            version: 2
        })
    );
    run(2, &Barrier::new(threads as usize));
}

#[test]
fn a_panicking_typed_function_is_a_call_error() {
    let (_dir, m) = probe_v1();
    let explode = m.func::<(&str,), String>("probe", "explode").unwrap();
    let e = explode.call(("boom",)).unwrap_err();
    assert!(
        matches!(&e, CallError::Panicked { function, message, .. }
            if function == "explode" && message.contains("exploded: boom")),
        "{e}"
    );
    // The host and the plugin carry on.
    assert_eq!(explode.call(("calm",)).unwrap(), "calm");
}

#[test]
fn a_panic_whose_payload_panics_as_it_is_dropped_is_a_call_error() {
    let (_dir, m) = probe_v1();
    let explode = m.func::<(&str,), String>("probe", "explode").unwrap();
    // Many times in one process: each would abort the host if the payload's drop
    // unwound out of the entry point.
    for _ in 0..20 {
        let e = explode.call(("bomb",)).unwrap_err();
        assert!(
            matches!(&e, CallError::Panicked { function, message, .. }
                if function == "explode" && message.contains("non-string payload")),
            "{e}"
        );
        let e = m.invoke_func("probe", "bomb", &[]).unwrap_err();
        assert!(
            matches!(&e, CallError::Panicked { message, .. } if message.contains("non-string payload")),
            "{e}"
        );
    }
    assert_eq!(explode.call(("calm",)).unwrap(), "calm");
}

#[test]
fn a_value_nested_without_end_is_refused_not_copied_by_recursion() {
    let (_dir, m) = probe_v1();
    // Nested a little: stored and answered as usual.
    m.invoke_func("probe", "deep_store", &[Value::from(10)])
        .unwrap();
    assert!(m
        .invoke_func("probe", "deep_answer", &[Value::from(10)])
        .is_ok());
    // Deeper than the host copies (its copy recursed, and a deep enough value overflowed
    // the host's stack, which aborts): refused with an error, the host carries on.
    let e = m
        .invoke_func("probe", "deep_store", &[Value::from(1000)])
        .unwrap_err();
    assert!(e.to_string().contains("nested deeper than"), "{e}");
    let e = m
        .invoke_func("probe", "deep_answer", &[Value::from(1000)])
        .unwrap_err();
    assert!(e.to_string().contains("nested deeper than"), "{e}");
    assert!(m.invoke_func("probe", "version", &[]).is_ok());
}

fn mismatch<A: hotswap_host::Args, R: hotswap_host::Ret>(
    m: &PluginManager,
    function: &str,
) -> (SignaturePart, String) {
    let e = m
        .func::<A, R>("probe", function)
        .err()
        .expect("the handle is refused");
    let CallError::Signature { mismatch, .. } = &e else {
        panic!("not a signature error: {e:?}")
    };
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    (mismatch.part, text)
}

#[test]
fn every_signature_mismatch_is_refused_at_handle_creation_naming_what_differs() {
    let (_dir, m) = probe_v1();
    // Argument count.
    let (part, text) = mismatch::<(&str, u32), Result<Quote, PricingError>>(&m, "quote");
    assert_eq!(part, SignaturePart::ArgumentCount);
    assert_eq!(
        text,
        "probe::quote: the plugin takes 3 arguments, the host asked for 2 arguments"
    );
    let (part, _) = mismatch::<u64, Result<Quote, PricingError>>(&m, "quote");
    assert_eq!(part, SignaturePart::ArgumentCount);
    // One argument's type.
    let (part, text) =
        mismatch::<(&str, u64, &QuoteOpts), Result<Quote, PricingError>>(&m, "quote");
    assert_eq!(part, SignaturePart::NthArgument(2));
    assert_eq!(
        text,
        "probe::quote: the plugin takes u32 as argument 2, the host asked for u64"
    );
    let (part, text) =
        mismatch::<(&str, u32, &OtherOpts), Result<Quote, PricingError>>(&m, "quote");
    assert_eq!(part, SignaturePart::NthArgument(3));
    assert!(
        text.contains("QuoteOpts") && text.contains("OtherOpts"),
        "{text}"
    );
    // The result type.
    let (part, text) = mismatch::<(&str, u32, &QuoteOpts), Vec<u8>>(&m, "label");
    assert_eq!(part, SignaturePart::Result);
    assert!(
        text.starts_with("probe::label: the plugin returns HostString"),
        "{text}"
    );
    let (part, _) = mismatch::<(&str, u32, &QuoteOpts), Result<u64, PricingError>>(&m, "quote");
    assert_eq!(part, SignaturePart::Result);
    // The error type.
    let (part, text) = mismatch::<(&str, u32, &QuoteOpts), Result<Quote, OtherError>>(&m, "quote");
    assert_eq!(part, SignaturePart::Error);
    assert_eq!(
        text,
        "probe::quote: the plugin's error type is PricingError, the host asked for OtherError"
    );
    // A single argument, as before.
    let (part, _) = mismatch::<(&[u8],), String>(&m, "explode");
    assert_eq!(part, SignaturePart::Argument);
}

#[test]
fn a_string_made_before_the_host_attached_is_copied_not_adopted() {
    let (_dir, m) = probe_v1();
    // A static constructor allocated it from the plugin's early arena, which the host's
    // allocator must never free: the host gets a copy, and the arena block is released
    // by the plugin.
    let early = m.func::<(), String>("probe", "early_text").unwrap();
    let mut text = early.call(()).unwrap();
    assert_eq!(text, "made before the host attached");
    text.push_str(", and grown by the host");
    drop(text);
    assert_eq!(early.call(()).unwrap(), "gone");
    // A vector whose buffer and elements are all arena blocks: copied likewise.
    let words = m.func::<(), Vec<String>>("probe", "early_words").unwrap();
    let mut w = words.call(()).unwrap();
    assert_eq!(w, ["early", "words"]);
    w.push("host".into());
    w[0].push_str(" bird");
    assert_eq!(w.join(" "), "early bird words host");
    assert!(words.call(()).unwrap().is_empty());
}

#[test]
fn handles_of_two_to_four_arguments_answer_before_their_plugin_is_loaded() {
    // Made before any load: each slot is the stub of its own calling convention (one
    // parameter per argument), called and answering `UnknownPlugin`; then the loaded
    // function, through the same handles.
    let dir = common::plugin_dir();
    let m = PluginManager::new(dir.path()).unwrap();
    let repeat: Func<(&str, u32), String> = m.func("probe", "repeat").unwrap();
    let quote: QuoteFn = m.func("probe", "quote").unwrap();
    let sum4: Func<(u64, u64, u32, u8), u64> = m.func("probe", "sum4").unwrap();
    let o = opts(0);
    for _ in 0..100 {
        let unknown = |e: CallError| matches!(e, CallError::UnknownPlugin(p) if p == "probe");
        assert!(repeat.call(("ab", 3)).is_err_and(unknown));
        assert!(quote.call(("apple", 1, &o)).is_err_and(unknown));
        assert!(sum4.call((1, 2, 3, 4)).is_err_and(unknown));
    }
    install(&build(PROBE, &[]), dir.path());
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(repeat.call(("ab", 3)).unwrap(), "ababab");
    assert!(quote.call(("apple", 1, &o)).unwrap().is_ok());
    assert_eq!(sum4.call((1, 2, 3, 4)).unwrap(), 10);
}
