//! `#[live_functions]`: registers a plugin's live functions from its `impl` block, by
//! attribute (`#[live]` on a method) and by name prefix (`live_` unless
//! `#[live_functions(prefix = "…")]` says otherwise, case-insensitive, as Go hotswap and
//! `hotswap build --live-prefix` do). Re-exported as `hotswap_plugin_api::live_functions`.
//!
//! `#[interface]`: makes a trait an interface a plugin implements and the host calls
//! through a handle. Re-exported as `hotswap_plugin_api::interface`.
#![warn(missing_docs)]

mod interface;

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_macro_input, ImplItem, ItemImpl, ItemTrait, LitStr};

/// Makes a trait an interface: a plugin implements it and lists it in
/// `export_plugin!(MyPlugin, interfaces { Trait })`; the host calls it through the
/// generated `TraitHandle` (`manager.interface::<dyn Trait>("plugin")`). Methods take
/// `&self` and up to four arguments of the types typed functions take; see
/// `hotswap_plugin_api::interface`. Takes no arguments.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::TokenStream::from(attr)
                .into_iter()
                .next()
                .map_or_else(proc_macro2::Span::call_site, |t| t.span()),
            "`#[interface]` takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let item = parse_macro_input!(item as ItemTrait);
    interface::expand(item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Registers live functions: every method of this `impl` block that carries `#[live]`
/// or whose name starts with the prefix (default `live_`). Each must have the signature
/// `fn(&self, args: &[Value]) -> Result<Value>`. Then write
/// `export_plugin!(MyPlugin, live_impl)` so the plugin exports them.
#[proc_macro_attribute]
pub fn live_functions(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut prefix = String::from("live_");
    if !attr.is_empty() {
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("prefix") {
                prefix = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error("expected `prefix = \"…\"`"))
            }
        });
        parse_macro_input!(attr with parser);
    }
    let mut imp = parse_macro_input!(item as ItemImpl);
    let self_ty = imp.self_ty.clone();
    let prefix = prefix.to_lowercase();
    let mut names = Vec::new();
    for item in &mut imp.items {
        if let ImplItem::Fn(f) = item {
            let marked = f.attrs.iter().any(|a| a.path().is_ident("live"));
            f.attrs.retain(|a| !a.path().is_ident("live"));
            if marked || f.sig.ident.to_string().to_lowercase().starts_with(&prefix) {
                names.push(f.sig.ident.clone());
            }
        }
    }
    let markers: Vec<_> = names
        .iter()
        .map(|n| format_ident!("__HotswapLive_{}", n))
        .collect();
    let strings: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    quote! {
        #imp

        #(
            #[allow(non_camel_case_types)]
            #[doc(hidden)]
            struct #markers;
            impl ::hotswap_plugin_api::glue::LiveMethod for #markers {
                type Plugin = #self_ty;
                fn call(
                    plugin: &#self_ty,
                    args: &[::hotswap_plugin_api::Value],
                ) -> ::std::result::Result<::hotswap_plugin_api::Value, ::hotswap_plugin_api::Error> {
                    <#self_ty>::#names(plugin, args)
                }
            }
        )*

        impl ::hotswap_plugin_api::glue::HasLive for #self_ty {
            const LIVE: &'static [::hotswap_plugin_api::vtable::LiveFn] = &[
                #(
                    ::hotswap_plugin_api::vtable::LiveFn {
                        name: ::hotswap_plugin_api::abi_stable::std_types::RStr::from_str(#strings),
                        call: ::hotswap_plugin_api::glue::live_call::<#markers>,
                        // SAFETY: `call` is the glue of the marker for this method.
                        sealed: unsafe { ::hotswap_plugin_api::vtable::Sealed::new() },
                    },
                )*
            ];
        }
    }
    .into()
}
