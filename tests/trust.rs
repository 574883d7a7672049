//! Who may put code into the host: a strict plugin directory (the default) and signed
//! builds. Every refusal names its cause, and the generation already serving keeps
//! serving, untouched; a file refused for its signature or checksum is never mapped.
//!
//! Builds are real `hotswap build` runs (signed with `--sign`), keys come from the real
//! `hotswap keygen`.

mod common;

use common::{build, build_with, install, plugin_dir, Build};
use hotswap_host::{
    Error, FileError, KeyId, LoadError, LoadErrorKind, Loose, PluginManager, SignatureError, Step,
    TrustMode, TrustedKey, Value,
};
use hotswap_manifest::Manifest;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const WORLD: &str = "demo/hello/world";

fn greet(m: &PluginManager) -> String {
    String::try_from(m.invoke_func("world", "greet", &[]).unwrap()).unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A key pair made by `hotswap keygen`, kept for the whole test process.
struct Key {
    secret: PathBuf,
    public: TrustedKey,
}

fn keygen(dir: &Path, name: &str) -> Key {
    let secret = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_hotswap"))
        .arg("keygen")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hotswap keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = TrustedKey::from_file(&secret.with_file_name(format!("{name}.pub"))).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&public.id().to_string()),
        "keygen prints the key id"
    );
    Key { secret, public }
}

/// Keys `a`, `b` (both trusted in the tests below) and `untrusted`.
fn keys() -> &'static (Key, Key, Key) {
    static KEYS: OnceLock<(Key, Key, Key)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = common::repo()
            .join("target/hotswap-test-keys")
            .join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (
            keygen(&dir, "a.key"),
            keygen(&dir, "b.key"),
            keygen(&dir, "untrusted.key"),
        )
    })
}

fn signed(features: &[&str], key: &Key) -> Build {
    build_with(WORLD, features, &["--sign", key.secret.to_str().unwrap()])
}

fn load_error(e: Error) -> LoadError {
    match e {
        Error::Load(e) => *e,
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// A manager over a fresh directory serving world v1 (`v1`), built by `make`.
fn serving(
    v1: &Build,
    make: impl FnOnce(&Path) -> PluginManager,
) -> (tempfile::TempDir, PluginManager) {
    let dir = plugin_dir();
    // The test's umask may leave the directory group-writable: make it what a service's
    // directory should be.
    chmod(dir.path(), 0o755);
    install(v1, dir.path());
    let m = make(dir.path());
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v1");
    (dir, m)
}

/// Reloads `m`, which must fail, and checks v1 still serves with nothing published.
fn refused_reload(m: &PluginManager) -> LoadError {
    let before = m.generation_id();
    let e = load_error(
        m.reload(&Value::Null)
            .expect_err("the reload must be refused"),
    );
    println!("refused as: {e}");
    assert_eq!(greet(m), "hello from v1", "the old generation serves");
    assert_eq!(m.generation_id(), before, "nothing was published");
    e
}

/// Whether any file whose name contains `file` is mapped into this process.
fn mapped(file: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|l| l.contains(file))
}

fn strict(dir: &Path) -> PluginManager {
    PluginManager::new(dir).unwrap()
}

fn trusting_a_and_b(dir: &Path) -> PluginManager {
    let (a, b, _) = keys();
    PluginManager::builder(dir)
        .trusted_keys([a.public.clone(), b.public.clone()])
        .build()
        .unwrap()
}

#[test]
fn a_group_writable_plugin_directory_is_refused() {
    let (dir, m) = serving(&build(WORLD, &[]), strict);
    install(&build(WORLD, &["v2"]), dir.path());
    chmod(dir.path(), 0o775);
    let e = refused_reload(&m);
    assert_eq!(e.step, Step::Trust);
    assert_eq!(e.file.as_deref(), Some(dir.path()));
    assert!(
        matches!(&e.kind, LoadErrorKind::Insecure { why: Loose::GroupWritable, mode: 0o775, path } if path == dir.path()),
        "{e}"
    );
    assert!(e.to_string().contains("permissive_plugin_dir"), "{e}");
    // Fixed, the same reload goes through.
    chmod(dir.path(), 0o755);
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
}

#[test]
fn a_world_writable_library_or_manifest_is_refused() {
    let (dir, m) = serving(&build(WORLD, &[]), strict);
    let v2 = build(WORLD, &["v2"]);
    install(&v2, dir.path());
    let library = dir.path().join(&v2.manifest.file);
    chmod(&library, 0o646);
    let e = refused_reload(&m);
    assert_eq!((e.step, e.plugin.as_deref()), (Step::Trust, Some("world")));
    assert!(
        matches!(&e.kind, LoadErrorKind::Insecure { why: Loose::WorldWritable, path, .. } if *path == library),
        "{e}"
    );
    assert!(
        !mapped(&v2.manifest.file),
        "the refused library was never mapped"
    );
    chmod(&library, 0o644);
    let manifest = dir.path().join(v2.manifest_path.file_name().unwrap());
    chmod(&manifest, 0o664);
    let e = refused_reload(&m);
    assert!(
        matches!(&e.kind, LoadErrorKind::Insecure { why: Loose::GroupWritable, path, .. } if *path == manifest),
        "{e}"
    );
}

#[test]
fn a_file_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        println!("not root: cannot give a file to another user; skipping (CI runs as root)");
        return;
    }
    let (dir, m) = serving(&build(WORLD, &[]), strict);
    let v2 = build(WORLD, &["v2"]);
    install(&v2, dir.path());
    let library = dir.path().join(&v2.manifest.file);
    let nobody = rustix::process::Uid::from_raw(65534);
    rustix::fs::chown(&library, Some(nobody), None).unwrap();
    let e = refused_reload(&m);
    assert!(
        matches!(
            &e.kind,
            LoadErrorKind::Insecure {
                why: Loose::ForeignOwner {
                    uid: 65534,
                    expected: 0
                },
                ..
            }
        ),
        "{e}"
    );
    // Root's own files are fine, as are the host user's.
    rustix::fs::chown(&library, Some(rustix::process::Uid::ROOT), None).unwrap();
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
}

#[test]
fn a_symlink_out_of_the_directory_is_refused_in_either_mode() {
    for mode in [TrustMode::Strict, TrustMode::Permissive] {
        let (dir, m) = serving(&build(WORLD, &[]), |d| {
            PluginManager::builder(d).trust_mode(mode).build().unwrap()
        });
        let v2 = build(WORLD, &["v2"]);
        let outside = plugin_dir();
        install(&v2, outside.path());
        // The library the manifest names is a link to the same bytes outside.
        std::fs::copy(
            &v2.manifest_path,
            dir.path().join(v2.manifest_path.file_name().unwrap()),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            outside.path().join(&v2.manifest.file),
            dir.path().join(&v2.manifest.file),
        )
        .unwrap();
        let e = refused_reload(&m);
        assert!(
            matches!(e.kind, LoadErrorKind::File(FileError::Symlink { .. })),
            "{mode}: {e}"
        );
        // And a manifest that is a link out of the directory.
        common::clear(dir.path());
        install(&build(WORLD, &[]), dir.path());
        std::os::unix::fs::symlink(
            outside.path().join(v2.manifest_path.file_name().unwrap()),
            dir.path().join("elsewhere.manifest.json"),
        )
        .unwrap();
        let e = refused_reload(&m);
        assert!(
            matches!(e.kind, LoadErrorKind::File(FileError::Symlink { .. })),
            "{mode}: {e}"
        );
        assert!(!mapped(&v2.manifest.file));
    }
}

#[test]
fn a_permissive_host_loads_from_a_loose_directory_and_says_so() {
    let (dir, m) = serving(&build(WORLD, &[]), |d| {
        PluginManager::builder(d)
            .permissive_plugin_dir()
            .build()
            .unwrap()
    });
    let s = m.status().trust;
    assert_eq!(
        (s.mode, s.signatures_required),
        (TrustMode::Permissive, false)
    );
    install(&build(WORLD, &["v2"]), dir.path());
    chmod(dir.path(), 0o777);
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
    chmod(dir.path(), 0o755);

    let m = std::sync::Arc::new(m);
    let metrics = hotswap_host::metrics::render(&hotswap_host::Trigger::new(m.clone()));
    assert!(
        metrics.contains("hotswap_trust_info{mode=\"permissive\",signatures=\"not_required\"} 1"),
        "{metrics}"
    );
    let strict = trusting_a_and_b(dir.path());
    let s = strict.status().trust;
    assert_eq!(s.mode, TrustMode::Strict);
    assert!(s.signatures_required);
    assert_eq!(
        s.trusted_keys,
        [
            keys().0.public.id().to_string(),
            keys().1.public.id().to_string()
        ]
    );
    let metrics =
        hotswap_host::metrics::render(&hotswap_host::Trigger::new(std::sync::Arc::new(strict)));
    assert!(
        metrics.contains("hotswap_trust_info{mode=\"strict\",signatures=\"required\"} 1")
            && metrics.contains("hotswap_trusted_keys 2"),
        "{metrics}"
    );
}

#[test]
fn a_signed_build_by_a_trusted_key_loads_and_a_rotation_reloads() {
    let (a, b, _) = keys();
    let (dir, m) = serving(&signed(&[], a), trusting_a_and_b);
    // The new release is signed with the new key; both are trusted during the rotation.
    let v2 = signed(&["v2"], b);
    install(&v2, dir.path());
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
    assert!(
        mapped(&v2.manifest.file),
        "a loaded version is mapped (so the checks that refused ones are not are real)"
    );
    // After it, a host trusting only the new key loads the new release.
    let only_b = PluginManager::builder(dir.path())
        .trusted_keys([b.public.clone()])
        .build()
        .unwrap();
    only_b.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&only_b), "hello from v2");
}

#[test]
fn an_unsigned_build_is_refused_when_keys_are_trusted() {
    let (dir, m) = serving(&signed(&[], &keys().0), trusting_a_and_b);
    let v2 = build(WORLD, &["v2"]);
    install(&v2, dir.path());
    let e = refused_reload(&m);
    assert_eq!((e.step, e.plugin.as_deref()), (Step::Trust, Some("world")));
    assert!(matches!(e.kind, LoadErrorKind::Unsigned { .. }), "{e}");
    assert!(e.to_string().contains("hotswap build --sign"), "{e}");
    assert!(!mapped(&v2.manifest.file));
}

#[test]
fn a_build_signed_by_an_untrusted_key_is_refused() {
    let (a, _, untrusted) = keys();
    let (dir, m) = serving(&signed(&[], a), trusting_a_and_b);
    let v2 = signed(&["v2"], untrusted);
    install(&v2, dir.path());
    let e = refused_reload(&m);
    let signer: KeyId = untrusted.public.id();
    assert!(
        matches!(&e.kind, LoadErrorKind::Signature { error: SignatureError::UntrustedKey { key_id, .. }, .. } if *key_id == signer),
        "{e}"
    );
    assert!(!mapped(&v2.manifest.file));
}

#[test]
fn a_library_changed_after_signing_is_refused_before_it_is_mapped() {
    let a = &keys().0;
    let (dir, m) = serving(&signed(&[], a), trusting_a_and_b);
    let v2 = signed(&["v2"], a);
    install(&v2, dir.path());
    // Another, complete and loadable plugin library (unsigned v1) in place of the
    // signed one.
    let other = build(WORLD, &[]);
    std::fs::copy(&other.library, dir.path().join(&v2.manifest.file)).unwrap();
    let e = refused_reload(&m);
    assert!(matches!(e.kind, LoadErrorKind::Checksum { .. }), "{e}");
    assert!(
        !mapped(&v2.manifest.file),
        "a library that does not match its signed manifest is never mapped"
    );
}

#[test]
fn a_manifest_changed_after_signing_is_refused_before_anything_is_mapped() {
    let a = &keys().0;
    let (dir, m) = serving(&signed(&[], a), trusting_a_and_b);
    let v2 = signed(&["v2"], a);
    install(&v2, dir.path());
    // The attacker's library (unsigned v1), with the signed manifest edited to name its
    // checksum.
    let other = build(WORLD, &[]);
    std::fs::copy(&other.library, dir.path().join(&v2.manifest.file)).unwrap();
    let manifest = dir.path().join(v2.manifest_path.file_name().unwrap());
    let mut edited: Manifest = Manifest::read(&manifest).unwrap();
    edited.sha256 = other.manifest.sha256.clone();
    edited.write(&manifest).unwrap();
    let e = refused_reload(&m);
    assert!(
        matches!(&e.kind, LoadErrorKind::Signature { error: SignatureError::Mismatch { key_id }, .. } if *key_id == a.public.id()),
        "{e}"
    );
    assert!(!mapped(&v2.manifest.file));
}

#[test]
fn a_checked_file_made_loose_later_is_refused_on_its_next_load() {
    // v1 passes every check once (and is remembered as checked), v2 replaces it, then
    // v2 goes away: loading v1 again must run the owner and mode checks again.
    let v1 = build(WORLD, &[]);
    let (dir, m) = serving(&v1, strict);
    let v2 = build(WORLD, &["v2"]);
    install(&v2, dir.path());
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
    std::fs::remove_file(dir.path().join(v2.manifest_path.file_name().unwrap())).unwrap();
    chmod(&dir.path().join(&v1.manifest.file), 0o666);
    let e = load_error(m.reload(&Value::Null).unwrap_err());
    assert!(
        matches!(
            &e.kind,
            LoadErrorKind::Insecure {
                why: Loose::WorldWritable,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(greet(&m), "hello from v2", "the old generation serves");
}

#[test]
fn hotswap_build_writes_safe_modes_whatever_the_umask() {
    let a = &keys().0;
    let root = plugin_dir();
    let out = root.path().join("plugins");
    // Cargo has built this before (`build`): it only puts the library in place.
    build(WORLD, &[]);
    let status = common::with_build_lock(|| {
        Command::new("sh")
            .arg("-c")
            .arg("umask 000 && exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_hotswap"))
            .arg("build")
            .arg("--sign")
            .arg(&a.secret)
            .arg("--target-dir")
            .arg(common::repo().join("target/hotswap-test-plugins"))
            .arg(common::repo().join(WORLD))
            .arg(&out)
            .status()
            .unwrap()
    });
    assert!(status.success());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out), 0o755);
    let mut files = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o644, "{}", p.display());
        files += 1;
    }
    assert_eq!(files, 3, "library, manifest, signature");
    // A strict host trusting the key loads straight from it.
    chmod(root.path(), 0o755);
    let m = trusting_a_and_b(&out);
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v1");
    // The secret key itself is private.
    assert_eq!(mode(&a.secret), 0o600);
}
