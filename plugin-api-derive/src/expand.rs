//! The code `#[derive(ConfigSchema)]` writes.

use crate::attrs::{doc_help, ContainerAttrs, DefaultSource, Errors, FieldAttrs};
use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use std::collections::HashSet;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, Type, WherePredicate};

/// One key of the schema, as read from a field.
struct Key<'a> {
    /// The name the table uses (serde's deserialize name).
    name: String,
    /// The name a default serializes to (serde's serialize name), to find it in the defaults.
    ser_name: String,
    ty: &'a Type,
    attrs: FieldAttrs,
    help: String,
}

/// The two impls for `input`, or the errors that prevent them.
pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => &named.named,
            Fields::Unnamed(_) | Fields::Unit => {
                return Err(syn::Error::new_spanned(
                    &input.ident,
                    "#[derive(ConfigSchema)] needs a struct with named fields (a configuration \
                     table has named keys); for a tuple or unit struct, implement \
                     plugbus_plugin_api::DescribeConfig by hand",
                ));
            }
        },
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span,
                "#[derive(ConfigSchema)] does not support enums, only structs with named \
                 fields; implement plugbus_plugin_api::ConfigType (and DescribeConfig) by hand, \
                 or mark the field that holds it #[config(any)]",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "#[derive(ConfigSchema)] does not support unions, only structs with named fields",
            ));
        }
    };

    let mut errors = Errors::default();
    let container = ContainerAttrs::parse(&input.attrs, &mut errors);
    let mut keys = Vec::new();
    for field in fields {
        let attrs = FieldAttrs::parse(&field.attrs, &mut errors);
        if attrs.skip {
            continue;
        }
        let Some(ident) = &field.ident else { continue };
        let rust_name = ident.unraw().to_string();
        let renamed = |explicit: &Option<String>, rule: Option<crate::case::RenameRule>| {
            explicit
                .clone()
                .unwrap_or_else(|| rule.map_or_else(|| rust_name.clone(), |r| r.apply(&rust_name)))
        };
        let name = renamed(&attrs.rename_de, container.rename_all_de);
        let ser_name = renamed(&attrs.rename_ser, container.rename_all_ser);
        let help = attrs.help.clone().unwrap_or_else(|| doc_help(&field.attrs));
        keys.push(Key {
            name,
            ser_name,
            ty: &field.ty,
            attrs,
            help,
        });
    }
    errors.finish()?;

    let krate = &container.krate;
    let serde = &container.serde;
    let ident = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let this = quote!(#ident #ty_generics);

    // Bounds for generic structs: each field type that mentions a type parameter must be a
    // ConfigType (and serializable with a Default, where a default is read from it).
    let params: HashSet<&Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let mut bounds: Vec<WherePredicate> = Vec::new();
    if !params.is_empty() {
        match &container.default {
            DefaultSource::None => {}
            DefaultSource::Trait => bounds.push(syn::parse_quote!(
                #this: ::core::default::Default + #serde::Serialize
            )),
            DefaultSource::Function(_) => bounds.push(syn::parse_quote!(#this: #serde::Serialize)),
        }
        for key in keys
            .iter()
            .filter(|k| mentions(k.ty.to_token_stream(), &params))
        {
            let ty = key.ty;
            if !key.attrs.any && key.attrs.like.is_none() {
                bounds.push(syn::parse_quote!(#ty: #krate::ConfigType));
            }
            match &key.attrs.default {
                DefaultSource::None => {}
                DefaultSource::Trait => bounds.push(syn::parse_quote!(
                    #ty: ::core::default::Default + #serde::Serialize
                )),
                DefaultSource::Function(_) => {
                    bounds.push(syn::parse_quote!(#ty: #serde::Serialize))
                }
            }
        }
    }
    let mut generics = input.generics.clone();
    if !bounds.is_empty() {
        generics.make_where_clause().predicates.extend(bounds);
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();

    let defaults = match &container.default {
        DefaultSource::None => None,
        DefaultSource::Trait => Some(quote! {
            #krate::schema::defaults_of::<Self>()
        }),
        DefaultSource::Function(path) => Some(quote! {
            match #krate::schema::default_value_of::<Self>(#path()) {
                ::core::option::Option::Some(#krate::serde_json::Value::Object(map)) => {
                    ::core::option::Option::Some(map)
                }
                _ => ::core::option::Option::None,
            }
        }),
    };
    let defaults_let = defaults.as_ref().map(|defaults| {
        quote! {
            #[allow(unused_variables)]
            let __plugbus_defaults: ::core::option::Option<
                #krate::serde_json::Map<::std::string::String, #krate::serde_json::Value>,
            > = #defaults;
        }
    });

    let key_exprs = keys.iter().map(|key| {
        let Key {
            name,
            ser_name,
            ty,
            attrs,
            help,
        } = key;
        let kind = if attrs.any {
            quote!(#krate::ValueKind::Any)
        } else if let Some(like) = &attrs.like {
            quote!(<#like as #krate::ConfigType>::kind())
        } else {
            quote!(<#ty as #krate::ConfigType>::kind())
        };
        let default = match &attrs.default {
            DefaultSource::Trait => Some(quote! {
                #krate::schema::default_value_of::<#ty>(<#ty as ::core::default::Default>::default())
            }),
            DefaultSource::Function(path) => Some(quote! {
                #krate::schema::default_value_of::<#ty>(#path())
            }),
            DefaultSource::None if defaults.is_some() => Some(quote! {
                __plugbus_defaults.as_ref().and_then(|map| map.get(#ser_name)).cloned()
            }),
            DefaultSource::None => None,
        };
        let required = !(container.default.is_some() || attrs.default.is_some() || is_option(ty));
        let key = quote! {
            #krate::ConfigKey::new(#name, #kind).help(#help).required(#required)
        };
        match default {
            Some(default) => quote! {{
                let mut __plugbus_key = #key;
                __plugbus_key.default = #default;
                __plugbus_key
            }},
            None => key,
        }
    });
    let deny_unknown = container.deny_unknown_fields;

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::DescribeConfig for #this #where_clause {
            fn config_schema() -> #krate::ConfigSchema {
                #defaults_let
                #krate::ConfigSchema::new()
                    .deny_unknown(#deny_unknown)
                    #( .key(#key_exprs) )*
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::ConfigType for #this #where_clause {
            fn kind() -> #krate::ValueKind {
                #krate::ValueKind::Struct {
                    schema: ::std::boxed::Box::new(
                        <Self as #krate::DescribeConfig>::config_schema(),
                    ),
                }
            }
        }
    })
}

/// Whether the type is written `Option<...>` (any path ending in `Option`): serde lets the
/// table leave such a field out.
fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        Type::Group(group) => is_option(&group.elem),
        Type::Paren(paren) => is_option(&paren.elem),
        _ => false,
    }
}

/// Whether the tokens name one of the type parameters.
fn mentions(tokens: TokenStream, params: &HashSet<&Ident>) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => params.contains(&ident),
        TokenTree::Group(group) => mentions(group.stream(), params),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn error_of(input: DeriveInput) -> String {
        match expand(&input) {
            Ok(tokens) => panic!("expanded, expected an error: {tokens}"),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn refuses_what_it_cannot_describe() {
        let text = error_of(parse_quote!(
            enum E {
                A,
            }
        ));
        assert!(text.contains("does not support enums"), "{text}");
        let text = error_of(parse_quote!(
            struct T(u32);
        ));
        assert!(text.contains("needs a struct with named fields"), "{text}");
        let text = error_of(parse_quote!(
            struct U;
        ));
        assert!(text.contains("needs a struct with named fields"), "{text}");
        let text = error_of(parse_quote!(
            union N {
                a: u32,
            }
        ));
        assert!(text.contains("does not support unions"), "{text}");
        let text = error_of(parse_quote!(
            struct F {
                #[serde(flatten)]
                rest: Inner,
            }
        ));
        assert!(
            text.contains("does not support #[serde(flatten)]"),
            "{text}"
        );
        assert!(text.contains("DescribeConfig"), "{text}");
        let text = error_of(parse_quote!(
            #[serde(transparent)]
            struct W {
                inner: Inner,
            }
        ));
        assert!(
            text.contains("does not support #[serde(transparent)]"),
            "{text}"
        );
    }

    #[test]
    fn reports_every_bad_attribute_at_once() {
        let text = error_of(parse_quote!(
            #[serde(rename_all = "Title Case")]
            struct C {
                #[config(anything)]
                a: u32,
                #[serde(flatten)]
                b: Inner,
            }
        ));
        assert!(
            text.contains("unknown rename rule \"Title Case\""),
            "{text}"
        );
        assert!(text.contains("\"kebab-case\""), "{text}");
        assert!(
            text.contains("unknown #[config] attribute on a field"),
            "{text}"
        );
        assert!(text.contains("flatten"), "{text}");
    }

    #[test]
    fn generic_structs_get_bounds_on_the_fields_that_use_their_parameters() {
        let input: DeriveInput = parse_quote!(
            #[serde(default)]
            struct G<T> {
                items: Vec<T>,
                port: u16,
            }
        );
        let text = expand(&input).map(|t| t.to_string()).unwrap_or_default();
        assert!(
            text.contains("Vec < T > : :: plugbus_plugin_api :: ConfigType"),
            "{text}"
        );
        assert!(
            !text.contains("u16 : :: plugbus_plugin_api :: ConfigType"),
            "{text}"
        );
        assert!(
            text.contains("G < T > : :: core :: default :: Default + :: serde :: Serialize"),
            "{text}"
        );
    }

    #[test]
    fn option_is_recognised_by_its_last_segment() {
        assert!(is_option(&parse_quote!(Option<u8>)));
        assert!(is_option(&parse_quote!(::std::option::Option<u8>)));
        assert!(!is_option(&parse_quote!(Vec<Option<u8>>)));
        assert!(!is_option(&parse_quote!(<T as Tr>::Option)));
    }
}
