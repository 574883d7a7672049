//! Forged plugin headers. A real plugin never writes these by hand: `export_plugin!`
//! does. This crate imitates what an incompatible plugin-api would put in the file.

#[cfg(feature = "old-abi")]
mod forged {
    /// The frozen prefix of every plugin-api's header, with another ABI major.
    #[repr(C)]
    pub struct OldHeader {
        magic: [u8; 16],
        abi_major: u32,
        abi_minor: u32,
    }

    #[no_mangle]
    pub static HOTSWAP_PLUGIN_HEADER: OldHeader = OldHeader {
        magic: hotswap_plugin_api::header::MAGIC,
        abi_major: 0,
        abi_minor: 7,
    };
}

#[cfg(all(feature = "bad-layout", not(feature = "old-abi")))]
mod forged {
    use abi_stable::{library::AbiHeader, std_types::RStr, type_layout::TypeLayout, StableAbi};

    /// Entry points of another shape than the host's `PluginVTable`.
    #[repr(C)]
    #[derive(StableAbi)]
    pub struct PluginVTable {
        pub name: RStr<'static>,
        pub version: u64,
    }

    #[repr(C)]
    pub struct Header {
        magic: [u8; 16],
        abi_major: u32,
        abi_minor: u32,
        abi_stable: AbiHeader,
        api_version: RStr<'static>,
        layout: &'static TypeLayout,
        vtable: &'static PluginVTable,
    }

    static VTABLE: PluginVTable = PluginVTable {
        name: RStr::from_str("forged"),
        version: 1,
    };

    #[no_mangle]
    pub static HOTSWAP_PLUGIN_HEADER: Header = Header {
        magic: hotswap_plugin_api::header::MAGIC,
        abi_major: hotswap_plugin_api::header::ABI_MAJOR,
        abi_minor: hotswap_plugin_api::header::ABI_MINOR,
        abi_stable: AbiHeader::VALUE,
        api_version: RStr::from_str("0.0.1-forged"),
        layout: <PluginVTable as StableAbi>::LAYOUT,
        vtable: &VTABLE,
    };
}
