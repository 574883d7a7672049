//! `#[interface]`: a trait whose methods a plugin exports as typed functions and the
//! host calls through a generated handle (see `hotswap_plugin_api::interface`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    FnArg, GenericParam, Ident, ItemTrait, Lifetime, Pat, ReturnType, TraitItem, TraitItemFn, Type,
};

/// One method of the trait, as it crosses the boundary.
struct Method {
    name: Ident,
    /// `Trait.method`: its name among the plugin's typed functions.
    export: String,
    /// The argument list type (`()`, a lone by-value type, or a tuple), lifetimes `'static`.
    args: TokenStream,
    /// The result type (`()` when the method returns nothing).
    ret: TokenStream,
    /// The handle method's parameter names and types, as the trait writes the types.
    params: Vec<(Ident, Type)>,
    /// The handle method's lifetime parameters.
    lifetimes: Vec<syn::LifetimeParam>,
    docs: Vec<syn::Attribute>,
}

/// Every lifetime in a type made `'static`, elided ones included: the key and wire form
/// of an argument list are written with `'static` and lent with the call's lifetime.
struct Staticize;

impl VisitMut for Staticize {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        r.lifetime = Some(Lifetime::new("'static", r.and_token.span));
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        *l = Lifetime::new("'static", l.span());
    }
}

fn error(span: Span, message: &str) -> syn::Error {
    syn::Error::new(span, message)
}

fn method(trait_name: &Ident, f: &TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    let name = sig.ident.clone();
    let what = format!("interface method `{trait_name}::{name}`");
    if let Some(a) = &sig.asyncness {
        return Err(error(
            a.span(),
            &format!("{what}: `async fn` is not supported"),
        ));
    }
    if let Some(u) = &sig.unsafety {
        return Err(error(
            u.span(),
            &format!("{what}: `unsafe fn` is not supported"),
        ));
    }
    let mut lifetimes = Vec::new();
    for p in &sig.generics.params {
        match p {
            GenericParam::Lifetime(l) => lifetimes.push(l.clone()),
            other => {
                return Err(error(
                    other.span(),
                    &format!(
                        "{what}: only lifetime parameters (a plugin's method is one function)"
                    ),
                ))
            }
        }
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) if r.mutability.is_some() => {
            return Err(error(
                r.span(),
                &format!(
                    "{what}: takes `&self` (calls run on many threads at once), not `&mut self`"
                ),
            ))
        }
        Some(other) => return Err(error(other.span(), &format!("{what}: must take `&self`"))),
        None => return Err(error(sig.span(), &format!("{what}: must take `&self`"))),
    }
    let mut params = Vec::new();
    let mut wire = Vec::new();
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(pt) = input else {
            unreachable!("only the first input can be a receiver")
        };
        if let Type::ImplTrait(t) = &*pt.ty {
            return Err(error(
                t.span(),
                &format!("{what}: `impl Trait` arguments are not supported"),
            ));
        }
        if let Type::Reference(r) = &*pt.ty {
            if r.mutability.is_some() {
                return Err(error(
                    r.span(),
                    &format!("{what}: `&mut` arguments are not supported (calls run on many threads at once)"),
                ));
            }
        }
        let ident = match &*pt.pat {
            Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
            _ => format_ident!("arg{}", i),
        };
        let mut ty = (*pt.ty).clone();
        Staticize.visit_type_mut(&mut ty);
        wire.push((matches!(&*pt.ty, Type::Reference(_)), ty));
        params.push((ident, (*pt.ty).clone()));
    }
    if params.len() > 4 {
        return Err(error(
            sig.inputs.span(),
            &format!("{what}: at most four arguments"),
        ));
    }
    let args = match wire.as_slice() {
        [] => quote!(()),
        [(false, t)] => quote!(#t),
        list => {
            let tys = list.iter().map(|(_, t)| t);
            quote!((#(#tys,)*))
        }
    };
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    let docs = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    Ok(Method {
        export: format!("{trait_name}.{name}"),
        name,
        args,
        ret,
        params,
        lifetimes,
        docs,
    })
}

/// The expansion of `#[interface]` on `item`.
pub fn expand(item: ItemTrait) -> syn::Result<TokenStream> {
    let t = &item.ident;
    if !item.generics.params.is_empty() {
        return Err(error(
            item.generics.span(),
            "an interface trait cannot have generic parameters",
        ));
    }
    let mut methods = Vec::new();
    for it in &item.items {
        match it {
            TraitItem::Fn(f) => methods.push(method(t, f)?),
            TraitItem::Const(c) => {
                return Err(error(
                    c.span(),
                    "an interface trait cannot have associated consts",
                ))
            }
            TraitItem::Type(ty) => {
                return Err(error(
                    ty.span(),
                    "an interface trait cannot have associated types",
                ))
            }
            _ => {}
        }
    }
    let api = quote!(::hotswap_plugin_api);
    let vis = &item.vis;
    let handle = format_ident!("{}Handle", t);
    let names: Vec<_> = methods.iter().map(|m| &m.name).collect();
    let exports: Vec<_> = methods.iter().map(|m| &m.export).collect();
    let args: Vec<_> = methods.iter().map(|m| &m.args).collect();
    let rets: Vec<_> = methods.iter().map(|m| &m.ret).collect();
    let markers: Vec<_> = methods
        .iter()
        .map(|m| format_ident!("__HotswapInterface_{}_{}", t, m.name))
        .collect();

    let handle_methods = methods.iter().map(|m| {
        let Method { name, args, ret, params, lifetimes, docs, export, .. } = m;
        let idents: Vec<_> = params.iter().map(|(i, _)| i).collect();
        let tys = params.iter().map(|(_, ty)| ty);
        let lent = match params.as_slice() {
            [] => quote!(()),
            [(i, ty)] if !matches!(ty, Type::Reference(_)) => quote!(#i),
            _ => quote!((#(#idents,)*)),
        };
        let call_doc = format!(
            "Calls `{export}` on the current generation (one typed call: see the host's `Func::call`).\n\n\
             # Errors\nWhen the call itself failed (a panic, the plugin gone); the method's own \
             result is the `Ok` value."
        );
        quote! {
            #(#docs)*
            #[doc = ""]
            #[doc = #call_doc]
            #[inline(always)]
            pub fn #name<#(#lifetimes),*>(&self, #(#idents: #tys),*)
                -> ::std::result::Result<#ret, <C as #api::interface::Calls>::Error>
            {
                <C as #api::interface::Calls>::call::<#args, #ret>(&self.#name, #lent)
            }
        }
    });

    let plugin_calls = methods.iter().map(|m| {
        let name = &m.name;
        let n = m.params.len();
        let idents: Vec<_> = (0..n).map(|i| format_ident!("a{}", i)).collect();
        match m.params.as_slice() {
            [] => quote!({ let () = args; <T as #t>::#name(plugin) }),
            [(_, ty)] if !matches!(ty, Type::Reference(_)) => {
                quote!({ <T as #t>::#name(plugin, args) })
            }
            _ => quote!({ let (#(#idents,)*) = args; <T as #t>::#name(plugin, #(#idents),*) }),
        }
    });

    let handle_doc = format!(
        "The host's handle on a plugin's implementation of [`{t}`], made by \
         `manager.interface::<dyn {t}>(plugin)`: one method per method of the trait, each a \
         typed call that pins the current generation. Generated by `#[interface]`."
    );
    let span = t.span();
    let calls_bound = quote_spanned!(span=> C: #api::interface::Calls);
    Ok(quote! {
        #item

        #[doc = #handle_doc]
        #vis struct #handle<#calls_bound> {
            #( #names: <C as #api::interface::Calls>::Func<#args, #rets>, )*
            _calls: ::std::marker::PhantomData<fn() -> C>,
        }

        impl<#calls_bound> ::std::clone::Clone for #handle<C> {
            fn clone(&self) -> Self {
                #handle {
                    #( #names: ::std::clone::Clone::clone(&self.#names), )*
                    _calls: ::std::marker::PhantomData,
                }
            }
        }

        impl<#calls_bound> #handle<C> {
            #( #handle_methods )*
        }

        const _: () = {
            #(
                #[allow(non_camel_case_types)]
                struct #markers<T>(::std::marker::PhantomData<fn() -> T>);
                impl<T: #t + #api::Plugin> #api::glue::TypedMethod for #markers<T> {
                    type Plugin = T;
                    type Args = #args;
                    type Ret = #rets;
                    #[inline]
                    fn call<'w>(
                        plugin: &T,
                        args: <#args as #api::typed::Args>::Lent<'w>,
                    ) -> #rets #plugin_calls
                }
            )*

            impl #api::interface::Interface for dyn #t {
                const NAME: &'static str = ::std::stringify!(#t);
                const METHODS: &'static [&'static str] = &[#(#exports),*];
                type Handle<C: #api::interface::Calls> = #handle<C>;
                fn bind<B: #api::interface::Binder>(
                    binder: &B,
                ) -> ::std::result::Result<
                    #handle<B::Calls>,
                    <B::Calls as #api::interface::Calls>::Error,
                > {
                    ::std::result::Result::Ok(#handle {
                        #( #names: binder.bind::<#args, #rets>(#exports)?, )*
                        _calls: ::std::marker::PhantomData,
                    })
                }
            }

            impl<T: #t + #api::Plugin> #api::interface::Implemented<T> for dyn #t {
                const TYPED: &'static [#api::vtable::TypedFn] = &[
                    #(
                        #api::vtable::TypedFn {
                            name: #api::abi_stable::std_types::RStr::from_str(#exports),
                            call: <#args as #api::glue::TypedEntry<#markers<T>>>::CALL,
                            arg: <<#args as #api::typed::Args>::Wire<'static>
                                as #api::abi_stable::StableAbi>::LAYOUT,
                            ret: <<#rets as #api::typed::Ret>::Wire
                                as #api::abi_stable::StableAbi>::LAYOUT,
                            // SAFETY: `call` is the `TypedEntry` of the marker whose `Args` and
                            // `Ret` have the wire forms whose layouts are `arg` and `ret`.
                            sealed: unsafe { #api::vtable::Sealed::new() },
                        },
                    )*
                ];
            }
        };
    })
}
