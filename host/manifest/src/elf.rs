//! Pre-flight checks on a plugin file, done on its bytes before it is handed to `dlopen`.
//!
//! `dlopen` trusts the file completely: a truncated library (a copy still in progress, a
//! full disk) is mapped anyway, and the process dies of `SIGBUS` the first time it touches
//! a page past the end of the file. [`validate`] refuses such a file with an error instead.
//! [`read_plugin_abi`] reads the frozen leading fields of the plugin header straight from
//! the file, so a plugin built against another ABI is refused before any of its code runs.

use hotswap_abi::header::{HEADER_SYMBOL, MAGIC};
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, ProgramHeader, Sym};
use object::{Endianness, ReadRef};

/// Number of leading header bytes [`read_plugin_abi`] reads: magic, `abi_major`, `abi_minor`.
const HEADER_PREFIX_LEN: u64 = 16 + 4 + 4;

/// Index of the class byte (32/64-bit) in `e_ident`.
const EI_CLASS: usize = 4;
/// Index of the data-encoding byte (endianness) in `e_ident`.
const EI_DATA: usize = 5;

/// The ABI version a plugin file declares in its header, read without loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginAbi {
    /// `abi_major` of the `hotswap-plugin-api` the plugin was built with.
    pub abi_major: u32,
    /// `abi_minor` of the `hotswap-plugin-api` the plugin was built with.
    pub abi_minor: u32,
}

/// Why a file cannot be loaded as a plugin. The messages are written to follow
/// "cannot load \<file\>: ".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// The bytes are not an ELF file at all; the string says what the parser tripped on.
    #[error("not an ELF file: {0}")]
    NotElf(String),
    /// A 32-bit ELF file; this host only loads 64-bit libraries.
    #[error("32-bit ELF file (ELF class {class}): this host only loads 64-bit libraries")]
    Not64Bit {
        /// The `EI_CLASS` byte found.
        class: u8,
    },
    /// An ELF file whose byte order is not the host's.
    #[error("ELF file is {found}-endian, this host is {expected}-endian")]
    WrongEndian {
        /// Byte order of the file ("big" or "little").
        found: &'static str,
        /// Byte order of this host.
        expected: &'static str,
    },
    /// An ELF file, but an executable, object file or core dump rather than a shared library.
    #[error("not a shared library (ELF type is not ET_DYN): build the plugin as a cdylib")]
    NotSharedObject,
    /// A shared library for another CPU architecture.
    #[error(
        "built for another architecture: ELF machine {found} ({}), this host needs {expected} ({})",
        machine_name(*found),
        machine_name(*expected)
    )]
    WrongMachine {
        /// `e_machine` of the file.
        found: u16,
        /// `e_machine` of this host.
        expected: u16,
    },
    /// The file ends before data its headers say it holds; mapping it would crash the process.
    #[error(
        "file is truncated: its ELF headers need at least {needed} bytes but it has only {len} \
         (a copy still in progress, or an interrupted write?)"
    )]
    Truncated {
        /// Bytes the headers require.
        needed: u64,
        /// Actual length of the file.
        len: u64,
    },
    /// The library does not export the plugin header symbol.
    #[error(
        "does not export {HEADER_SYMBOL}: not a hotswap plugin (did the crate call export_plugin!?)"
    )]
    NoPluginHeader,
    /// The header symbol's address is not backed by bytes of the file.
    #[error("{HEADER_SYMBOL} at address {address:#x} lies outside the file's loaded segments")]
    HeaderOutsideFile {
        /// Virtual address of the symbol.
        address: u64,
    },
    /// The header symbol exists but does not start with the hotswap magic bytes.
    #[error(
        "{HEADER_SYMBOL} does not start with the hotswap magic bytes: not a hotswap plugin header, \
         or a corrupt file"
    )]
    BadMagic,
}

/// `e_machine` of the architecture this host was compiled for, `None` where unknown
/// (then the machine is not checked).
fn expected_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(elf::EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(elf::EM_AARCH64)
    } else {
        None
    }
}

/// Readable name of an ELF machine number, for error messages.
fn machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "x86",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "powerpc64",
        elf::EM_S390 => "s390x",
        elf::EM_LOONGARCH => "loongarch",
        _ => "unknown",
    }
}

fn endian_name(little: bool) -> &'static str {
    if little {
        "little"
    } else {
        "big"
    }
}

/// A parsed and bounds-checked ELF header.
struct Parsed<'a> {
    header: &'a FileHeader64<Endianness>,
    endian: Endianness,
    segments: &'a [ProgramHeader64<Endianness>],
}

/// `base + count * size`, or [`ElfError::NotElf`] when the headers' numbers overflow.
fn table_end(base: u64, count: u64, size: u64, what: &str) -> Result<u64, ElfError> {
    count
        .checked_mul(size)
        .and_then(|n| n.checked_add(base))
        .ok_or_else(|| ElfError::NotElf(format!("{what} extends past the 64-bit address space")))
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ElfError> {
    let len = bytes.len() as u64;
    if bytes.len() < elf::ELFMAG.len() || bytes[..elf::ELFMAG.len()] != elf::ELFMAG {
        return Err(ElfError::NotElf("no ELF magic number at the start".into()));
    }
    let header_len = std::mem::size_of::<FileHeader64<Endianness>>() as u64;
    if len < header_len {
        return Err(ElfError::Truncated {
            needed: header_len,
            len,
        });
    }
    let class = bytes[EI_CLASS];
    if class != elf::ELFCLASS64 {
        return Err(ElfError::Not64Bit { class });
    }
    let native_little = cfg!(target_endian = "little");
    let file_little = match bytes[EI_DATA] {
        elf::ELFDATA2LSB => true,
        elf::ELFDATA2MSB => false,
        other => {
            return Err(ElfError::NotElf(format!(
                "unknown ELF data encoding {other}"
            )))
        }
    };
    if file_little != native_little {
        return Err(ElfError::WrongEndian {
            found: endian_name(file_little),
            expected: endian_name(native_little),
        });
    }
    let header =
        FileHeader64::<Endianness>::parse(bytes).map_err(|e| ElfError::NotElf(e.to_string()))?;
    let endian = header
        .endian()
        .map_err(|e| ElfError::NotElf(e.to_string()))?;
    if header.e_type(endian) != elf::ET_DYN {
        return Err(ElfError::NotSharedObject);
    }
    if let Some(expected) = expected_machine() {
        let found = header.e_machine(endian);
        if found != expected {
            return Err(ElfError::WrongMachine { found, expected });
        }
    }

    // Program header table, then every PT_LOAD segment's file range.
    let phoff = header.e_phoff(endian);
    let phnum = u64::from(header.e_phnum(endian));
    let ph_end = table_end(
        phoff,
        phnum,
        u64::from(header.e_phentsize(endian)),
        "program header table",
    )?;
    let mut needed = ph_end;
    if ph_end > len {
        return Err(ElfError::Truncated { needed, len });
    }
    let segments = header
        .program_headers(endian, bytes)
        .map_err(|e| ElfError::NotElf(e.to_string()))?;
    for segment in segments {
        if segment.p_type(endian) == elf::PT_LOAD {
            let end = segment
                .p_offset(endian)
                .checked_add(segment.p_filesz(endian))
                .ok_or_else(|| ElfError::NotElf("PT_LOAD segment size overflows".into()))?;
            needed = needed.max(end);
        }
    }

    // Section header table (its count may live in section 0 when there are many).
    let shoff = header.e_shoff(endian);
    if shoff != 0 {
        let shentsize = u64::from(header.e_shentsize(endian));
        let first_end = table_end(shoff, 1, shentsize, "section header table")?;
        needed = needed.max(first_end);
        if needed > len {
            return Err(ElfError::Truncated { needed, len });
        }
        let shnum = header
            .shnum(endian, bytes)
            .map_err(|e| ElfError::NotElf(e.to_string()))? as u64;
        needed = needed.max(table_end(shoff, shnum, shentsize, "section header table")?);
    }
    if needed > len {
        return Err(ElfError::Truncated { needed, len });
    }
    Ok(Parsed {
        header,
        endian,
        segments,
    })
}

/// Checks that `bytes` are a complete 64-bit, native-endian ELF shared library for this
/// host's architecture, so that `dlopen` can map it without crashing the process.
///
/// Fails with [`ElfError::NotElf`] (not ELF, or malformed headers), [`ElfError::Not64Bit`],
/// [`ElfError::WrongEndian`], [`ElfError::NotSharedObject`] (not `ET_DYN`),
/// [`ElfError::WrongMachine`] (x86_64 and aarch64 hosts only), or [`ElfError::Truncated`]
/// when a `PT_LOAD` segment or the section header table extends past the end of the file.
pub fn validate(bytes: &[u8]) -> Result<(), ElfError> {
    parse(bytes).map(|_| ())
}

/// Reads the ABI version from the plugin header a library exports, without loading it.
///
/// Runs [`validate`] first, then looks up the dynamic symbol
/// [`HEADER_SYMBOL`], maps its address to a file
/// offset through the `PT_LOAD` segments and reads the magic and the two version numbers.
/// Fails with [`validate`]'s errors, [`ElfError::NoPluginHeader`] when the symbol is not
/// exported, [`ElfError::HeaderOutsideFile`] when its bytes are not in the file, and
/// [`ElfError::BadMagic`] when they do not start with
/// [`MAGIC`].
pub fn read_plugin_abi(bytes: &[u8]) -> Result<PluginAbi, ElfError> {
    let Parsed {
        header,
        endian,
        segments,
    } = parse(bytes)?;
    let address = find_dynamic_symbol(header, endian, bytes, HEADER_SYMBOL.as_bytes())?
        .ok_or(ElfError::NoPluginHeader)?;
    let offset = segments
        .iter()
        .filter(|s| s.p_type(endian) == elf::PT_LOAD)
        .find_map(|s| {
            let start = s.p_vaddr(endian);
            let delta = address.checked_sub(start)?;
            let end = delta.checked_add(HEADER_PREFIX_LEN)?;
            (end <= s.p_filesz(endian)).then(|| s.p_offset(endian) + delta)
        })
        .ok_or(ElfError::HeaderOutsideFile { address })?;
    let prefix = bytes
        .read_bytes_at(offset, HEADER_PREFIX_LEN)
        .map_err(|()| ElfError::HeaderOutsideFile { address })?;
    if prefix[..16] != MAGIC {
        return Err(ElfError::BadMagic);
    }
    let word = |at: usize| {
        u32::from_ne_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
    };
    Ok(PluginAbi {
        abi_major: word(16),
        abi_minor: word(20),
    })
}

/// The symbol `export_plugin!` exports only in a plugin compiled with `panic = "abort"`.
pub const PANIC_ABORT_SYMBOL: &str = "HOTSWAP_PANIC_ABORT";

/// Whether the library in `bytes` defines (exports) the dynamic symbol `name`.
///
/// Runs [`validate`] first and fails with its errors.
pub fn exports_symbol(bytes: &[u8], name: &str) -> Result<bool, ElfError> {
    let Parsed { header, endian, .. } = parse(bytes)?;
    Ok(find_dynamic_symbol(header, endian, bytes, name.as_bytes())?.is_some())
}

/// Address of the defined dynamic symbol `name`, `None` when the library has no such symbol
/// (or no dynamic symbol table).
fn find_dynamic_symbol(
    header: &FileHeader64<Endianness>,
    endian: Endianness,
    bytes: &[u8],
    name: &[u8],
) -> Result<Option<u64>, ElfError> {
    let sections = header
        .sections(endian, bytes)
        .map_err(|e| ElfError::NotElf(e.to_string()))?;
    let symbols = sections
        .symbols(endian, bytes, elf::SHT_DYNSYM)
        .map_err(|e| ElfError::NotElf(e.to_string()))?;
    for symbol in symbols.iter() {
        if symbol.st_shndx(endian) == elf::SHN_UNDEF {
            continue;
        }
        if symbols.symbol_name(endian, symbol).ok() == Some(name) {
            return Ok(Some(symbol.st_value(endian)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Path of the C library this test process runs on, if it can be found.
    fn system_shared_library() -> Option<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mapped = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc") && path.ends_with(".so.6"))
            .map(PathBuf::from);
        mapped.or_else(|| {
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/aarch64-linux-gnu/libc.so.6",
                "/lib64/libc.so.6",
                "/usr/lib/libc.so.6",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        })
    }

    #[test]
    fn random_bytes_are_not_elf() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(matches!(validate(&bytes), Err(ElfError::NotElf(_))));
        assert!(matches!(read_plugin_abi(&bytes), Err(ElfError::NotElf(_))));
        assert!(matches!(validate(&[]), Err(ElfError::NotElf(_))));
    }

    #[test]
    fn elf_header_alone_is_truncated() {
        let Some(path) = system_shared_library() else {
            eprintln!("no system shared library found; skipping");
            return;
        };
        let bytes = std::fs::read(&path).expect("read libc");
        let err = validate(&bytes[..40]).expect_err("40 bytes cannot be a library");
        assert!(
            matches!(
                err,
                ElfError::Truncated {
                    needed: 64,
                    len: 40
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn system_library_is_valid_but_not_a_plugin() {
        let Some(path) = system_shared_library() else {
            eprintln!("no system shared library found; skipping");
            return;
        };
        let bytes = std::fs::read(&path).expect("read libc");
        validate(&bytes).unwrap_or_else(|e| panic!("{} should validate: {e}", path.display()));
        let err = read_plugin_abi(&bytes).expect_err("libc is not a plugin");
        assert!(matches!(err, ElfError::NoPluginHeader), "{err}");
        assert!(err.to_string().contains("export_plugin!"), "{err}");
    }

    #[test]
    fn exports_symbol_finds_defined_symbols_only() {
        let Some(path) = system_shared_library() else {
            eprintln!("no system shared library found; skipping");
            return;
        };
        let bytes = std::fs::read(&path).expect("read libc");
        assert!(exports_symbol(&bytes, "malloc").unwrap());
        assert!(!exports_symbol(&bytes, PANIC_ABORT_SYMBOL).unwrap());
        assert!(exports_symbol(b"not elf", "malloc").is_err());
    }

    #[test]
    fn truncated_library_is_refused() {
        let Some(path) = system_shared_library() else {
            eprintln!("no system shared library found; skipping");
            return;
        };
        let bytes = std::fs::read(&path).expect("read libc");
        let half = &bytes[..bytes.len() / 2];
        let err = validate(half).expect_err("half a library must be refused");
        match err {
            ElfError::Truncated { needed, len } => {
                assert_eq!(len, half.len() as u64);
                assert!(needed > len);
            }
            other => panic!("expected Truncated, got {other}"),
        }
        assert!(matches!(
            read_plugin_abi(half),
            Err(ElfError::Truncated { .. })
        ));
    }

    /// Knobs for [`synthetic_plugin`].
    struct Synthetic {
        e_type: u16,
        symbol: &'static [u8],
        magic: [u8; 16],
        symbol_value_delta: u64,
    }

    impl Default for Synthetic {
        fn default() -> Self {
            Synthetic {
                e_type: elf::ET_DYN,
                symbol: HEADER_SYMBOL.as_bytes(),
                magic: MAGIC,
                symbol_value_delta: 0,
            }
        }
    }

    const SYNTHETIC_BASE: u64 = 0x10000;

    /// A minimal ELF64 shared object: one PT_LOAD mapping the file at `SYNTHETIC_BASE`, a
    /// dynamic symbol table with one symbol pointing at a plugin header prefix
    /// (ABI 7.3), and a section header table at the end.
    fn synthetic_plugin(opts: &Synthetic) -> Vec<u8> {
        fn u16b(v: u16) -> [u8; 2] {
            v.to_ne_bytes()
        }
        fn u32b(v: u32) -> [u8; 4] {
            v.to_ne_bytes()
        }
        fn u64b(v: u64) -> [u8; 8] {
            v.to_ne_bytes()
        }
        let mut dynstr = vec![0u8];
        dynstr.extend_from_slice(opts.symbol);
        dynstr.push(0);
        let dynstr_off = 64 + 56;
        let dynsym_off = (dynstr_off + dynstr.len()).next_multiple_of(8);
        let header_off = dynsym_off + 2 * 24;
        let shoff = header_off + 24;
        let mut out = Vec::new();
        // ELF header.
        out.extend_from_slice(&elf::ELFMAG);
        out.push(elf::ELFCLASS64);
        out.push(if cfg!(target_endian = "little") {
            elf::ELFDATA2LSB
        } else {
            elf::ELFDATA2MSB
        });
        out.push(elf::EV_CURRENT);
        out.resize(16, 0);
        out.extend_from_slice(&u16b(opts.e_type));
        out.extend_from_slice(&u16b(expected_machine().unwrap_or(elf::EM_X86_64)));
        out.extend_from_slice(&u32b(u32::from(elf::EV_CURRENT)));
        out.extend_from_slice(&u64b(0)); // e_entry
        out.extend_from_slice(&u64b(64)); // e_phoff
        out.extend_from_slice(&u64b(shoff as u64));
        out.extend_from_slice(&u32b(0)); // e_flags
        out.extend_from_slice(&u16b(64)); // e_ehsize
        out.extend_from_slice(&u16b(56)); // e_phentsize
        out.extend_from_slice(&u16b(1)); // e_phnum
        out.extend_from_slice(&u16b(64)); // e_shentsize
        out.extend_from_slice(&u16b(4)); // e_shnum
        out.extend_from_slice(&u16b(1)); // e_shstrndx: .dynstr doubles as section names
                                         // The one PT_LOAD: the whole file up to the section headers.
        out.extend_from_slice(&u32b(elf::PT_LOAD));
        out.extend_from_slice(&u32b(elf::PF_R));
        out.extend_from_slice(&u64b(0)); // p_offset
        out.extend_from_slice(&u64b(SYNTHETIC_BASE)); // p_vaddr
        out.extend_from_slice(&u64b(SYNTHETIC_BASE)); // p_paddr
        out.extend_from_slice(&u64b(shoff as u64)); // p_filesz
        out.extend_from_slice(&u64b(shoff as u64)); // p_memsz
        out.extend_from_slice(&u64b(0x1000)); // p_align
        assert_eq!(out.len(), dynstr_off);
        out.extend_from_slice(&dynstr);
        out.resize(dynsym_off, 0);
        // Symbol 0 is the null symbol; symbol 1 is the header.
        out.resize(dynsym_off + 24, 0);
        out.extend_from_slice(&u32b(1)); // st_name
        out.push((elf::STB_GLOBAL << 4) | elf::STT_OBJECT);
        out.push(elf::STV_DEFAULT);
        out.extend_from_slice(&u16b(3)); // st_shndx: the .data section below
        let value = SYNTHETIC_BASE + header_off as u64 + opts.symbol_value_delta;
        out.extend_from_slice(&u64b(value));
        out.extend_from_slice(&u64b(HEADER_PREFIX_LEN));
        assert_eq!(out.len(), header_off);
        out.extend_from_slice(&opts.magic);
        out.extend_from_slice(&u32b(7));
        out.extend_from_slice(&u32b(3));
        assert_eq!(out.len(), shoff);
        // Section headers: null, .dynstr, .dynsym, .data.
        let mut section = |sh_type: u32, offset: usize, size: usize, link: u32, entsize: u64| {
            out.extend_from_slice(&u32b(0)); // sh_name
            out.extend_from_slice(&u32b(sh_type));
            out.extend_from_slice(&u64b(u64::from(elf::SHF_ALLOC)));
            out.extend_from_slice(&u64b(SYNTHETIC_BASE + offset as u64)); // sh_addr
            out.extend_from_slice(&u64b(offset as u64));
            out.extend_from_slice(&u64b(size as u64));
            out.extend_from_slice(&u32b(link));
            out.extend_from_slice(&u32b(0)); // sh_info
            out.extend_from_slice(&u64b(8)); // sh_addralign
            out.extend_from_slice(&u64b(entsize));
        };
        section(elf::SHT_NULL, 0, 0, 0, 0);
        section(elf::SHT_STRTAB, dynstr_off, dynstr.len(), 0, 0);
        section(elf::SHT_DYNSYM, dynsym_off, 48, 1, 24);
        section(elf::SHT_PROGBITS, header_off, 24, 0, 0);
        out
    }

    #[test]
    fn synthetic_plugin_header_is_read() {
        let bytes = synthetic_plugin(&Synthetic::default());
        validate(&bytes).expect("synthetic plugin validates");
        let abi = read_plugin_abi(&bytes).expect("synthetic plugin has a header");
        assert_eq!(
            abi,
            PluginAbi {
                abi_major: 7,
                abi_minor: 3
            }
        );
    }

    #[test]
    fn synthetic_plugin_failures() {
        let bad_magic = synthetic_plugin(&Synthetic {
            magic: *b"not-a-plugin\0\0\0\0",
            ..Synthetic::default()
        });
        assert!(matches!(
            read_plugin_abi(&bad_magic),
            Err(ElfError::BadMagic)
        ));

        let other_symbol = synthetic_plugin(&Synthetic {
            symbol: b"SOMETHING_ELSE_ENTIRELY",
            ..Synthetic::default()
        });
        validate(&other_symbol).expect("still a valid library");
        assert!(matches!(
            read_plugin_abi(&other_symbol),
            Err(ElfError::NoPluginHeader)
        ));

        let outside = synthetic_plugin(&Synthetic {
            symbol_value_delta: 0x100_0000,
            ..Synthetic::default()
        });
        assert!(matches!(
            read_plugin_abi(&outside),
            Err(ElfError::HeaderOutsideFile { .. })
        ));

        let executable = synthetic_plugin(&Synthetic {
            e_type: elf::ET_EXEC,
            ..Synthetic::default()
        });
        assert!(matches!(
            validate(&executable),
            Err(ElfError::NotSharedObject)
        ));

        let mut other_machine = synthetic_plugin(&Synthetic::default());
        other_machine[18..20].copy_from_slice(&elf::EM_S390.to_ne_bytes());
        if let Some(expected) = expected_machine() {
            assert!(matches!(
                validate(&other_machine),
                Err(ElfError::WrongMachine { found: elf::EM_S390, expected: e }) if e == expected
            ));
        }

        let mut class32 = synthetic_plugin(&Synthetic::default());
        class32[EI_CLASS] = elf::ELFCLASS32;
        assert!(matches!(
            validate(&class32),
            Err(ElfError::Not64Bit { class: 1 })
        ));

        let mut other_endian = synthetic_plugin(&Synthetic::default());
        other_endian[EI_DATA] = if cfg!(target_endian = "little") {
            elf::ELFDATA2MSB
        } else {
            elf::ELFDATA2LSB
        };
        assert!(matches!(
            validate(&other_endian),
            Err(ElfError::WrongEndian { .. })
        ));

        // Cut inside the section header table: the segments are whole, the table is not.
        let whole = synthetic_plugin(&Synthetic::default());
        let cut = &whole[..whole.len() - 10];
        assert!(matches!(
            validate(cut),
            Err(ElfError::Truncated { needed, len }) if needed == whole.len() as u64 && len == cut.len() as u64
        ));
        // Cut inside the PT_LOAD segment.
        let cut = &whole[..200];
        assert!(matches!(validate(cut), Err(ElfError::Truncated { .. })));
    }

    #[test]
    fn messages_read_well() {
        let err = ElfError::WrongMachine {
            found: elf::EM_AARCH64,
            expected: elf::EM_X86_64,
        };
        assert_eq!(
            err.to_string(),
            "built for another architecture: ELF machine 183 (aarch64), this host needs 62 (x86_64)"
        );
        let err = ElfError::Truncated {
            needed: 100,
            len: 50,
        };
        assert!(err.to_string().starts_with("file is truncated: "));
    }
}
