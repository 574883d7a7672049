//! [`NameKey`]: a plugin name packed into a few words, so that a call by name finds its
//! plugin without hashing the name or calling `memcmp`; and [`NameHasher`], for the
//! maps of names that are hashed.

/// The length and up to 16 bytes of a name, taken the same way from every name, so
/// that two names of at most 16 bytes are equal exactly when their keys are (longer
/// names must also be compared in full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameKey {
    len: usize,
    head: u64,
    tail: u64,
}

/// Names up to this long are told apart by their keys alone.
const EXACT_UP_TO: usize = 16;

impl NameKey {
    /// The key of `name`.
    #[inline(always)]
    pub(crate) fn of(name: &str) -> NameKey {
        let (head, tail) = words(name.as_bytes());
        NameKey {
            len: name.len(),
            head,
            tail,
        }
    }

    /// Whether two names with this key are equal: a name of at most 16 bytes has a key
    /// of its own; longer names with equal keys must also be compared in full.
    #[inline(always)]
    pub(crate) fn exact(&self) -> bool {
        self.len <= EXACT_UP_TO
    }

    /// Whether the name this key was made of, `own()`, is `name`, whose key is `key`:
    /// the keys are compared, and only two long names with equal keys in full (off the
    /// inlined scan).
    #[inline(always)]
    pub(crate) fn names<'a>(
        &self,
        key: &NameKey,
        name: &str,
        own: impl FnOnce() -> &'a str,
    ) -> bool {
        *self == *key && (key.exact() || long_names_equal(own(), name))
    }
}

/// Two names longer than a [`NameKey`] holds, compared in full (rare: off the inlined
/// scan).
#[cold]
#[inline(never)]
fn long_names_equal(a: &str, b: &str) -> bool {
    a == b
}

/// Two words that, with the length, determine a byte string of at most 16 bytes: the
/// first and last 8 bytes (overlapping when shorter than 16), the first and last 4, or
/// for up to 3 bytes the first, middle and last byte.
#[inline(always)]
fn words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if n >= 8 {
        (le64(&b[..8]), le64(&b[n - 8..]))
    } else if n >= 4 {
        (u64::from(le32(&b[..4])), u64::from(le32(&b[n - 4..])))
    } else if n > 0 {
        let word = u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16;
        (word, 0)
    } else {
        (0, 0)
    }
}

#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn le32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    u32::from_le_bytes(w)
}

/// A hasher for names, for the index of a generation of many plugins and the live
/// function table: a multiply-rotate over 8 bytes at a time (as rustc's FxHash does),
/// several times cheaper than std's SipHash on short strings. The names come from the
/// host's own plugin directory and plugins (trusted, per the trust model), so the flood
/// resistance SipHash buys is not needed here.
#[derive(Clone, Copy, Default)]
pub(crate) struct NameHasher(u64);

/// What makes [`NameHasher`]s for a `HashMap`.
pub(crate) type BuildNameHasher = std::hash::BuildHasherDefault<NameHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl NameHasher {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl std::hash::Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(le64(c));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::NameKey;

    #[test]
    fn a_map_with_the_name_hasher_finds_every_name() {
        let mut m: std::collections::HashMap<String, usize, super::BuildNameHasher> =
            Default::default();
        let names: Vec<String> = (0..500).map(|i| format!("plugin-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            m.insert(n.clone(), i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(n.as_str()), Some(&i));
        }
        assert_eq!(m.get("plugin-500"), None);
        assert_eq!(m.get(""), None);
    }

    /// Equality as a lookup decides it.
    fn same(a: &str, b: &str) -> bool {
        NameKey::of(a).names(&NameKey::of(b), b, || a)
    }

    #[test]
    fn keys_tell_every_pair_of_names_apart_exactly() {
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "aa",
            "abc",
            "acc",
            "abd",
            "abcd",
            "abce",
            "probe",
            "prob",
            "probf",
            "probe1",
            "probe-12",
            "probe_12",
            "0123456789abcdef",
            "0123456789abcdeg",
            "1123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdef1",
            "0123456789Abcdef0",
            "x".repeat(40).as_str().to_owned().leak(),
            "x".repeat(39).as_str().to_owned().leak(),
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a, b), a == b, "{a:?} against {b:?}");
            }
        }
        // Every name of up to 3 bytes over a small alphabet, against every other.
        let alphabet = ["a", "b", "c"];
        let mut short = vec![String::new()];
        for len in 1..=3 {
            let mut more = Vec::new();
            for s in short.iter().filter(|s| s.len() == len - 1) {
                for c in alphabet {
                    more.push(format!("{s}{c}"));
                }
            }
            short.extend(more);
        }
        for a in &short {
            for b in &short {
                assert_eq!(same(a, b), a == b, "{a:?} against {b:?}");
            }
        }
    }

    /// What a generation's scan does: the first entry whose name is the one asked for,
    /// past entries whose long names share its key.
    fn scan<'a>(entries: &[&'a str], name: &str) -> Option<&'a str> {
        let keys: Vec<NameKey> = entries.iter().map(|e| NameKey::of(e)).collect();
        let key = NameKey::of(name);
        let i = (0..entries.len()).find(|&i| keys[i].names(&key, name, || entries[i]))?;
        Some(entries[i])
    }

    #[test]
    fn a_scan_finds_a_long_name_behind_another_with_the_same_key() {
        let a = "0123456789abcdef-middle-0123456789abcdef";
        let b = "0123456789abcdef-MIDDLE-0123456789abcdef";
        assert_eq!(NameKey::of(a), NameKey::of(b));
        let entries = ["probe", a, b, "provider"];
        assert_eq!(scan(&entries, b), Some(b));
        assert_eq!(scan(&entries, a), Some(a));
        assert_eq!(scan(&entries, "provider"), Some("provider"));
        assert_eq!(
            scan(&entries, "0123456789abcdef-middle-0123456789abcdeF"),
            None
        );
        assert_eq!(scan(&entries, "prob"), None);
        assert_eq!(scan(&[], "probe"), None);
    }

    #[test]
    fn long_names_are_compared_in_full() {
        let (a, b) = (
            "0123456789abcdef-middle-0123456789abcdef",
            "0123456789abcdef-MIDDLE-0123456789abcdef",
        );
        assert!(!same(a, b));
        assert!(same(a, a));
    }
}
