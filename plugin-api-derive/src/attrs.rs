//! Reading the attributes the derive looks at: serde's own (`#[serde(...)]`, the ones that
//! change which keys a table has and which of them it may leave out), the derive's
//! (`#[config(...)]`) and the doc comments.

use crate::case::RenameRule;
use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, ExprPath, Lit, LitStr, Meta, Path};

/// Where a value's default comes from (`#[serde(default)]`, `#[serde(default = "path")]`).
#[derive(Clone)]
pub(crate) enum DefaultSource {
    /// No `default` attribute.
    None,
    /// `default`: the type's `Default`.
    Trait,
    /// `default = "path"`: a function returning the value.
    Function(ExprPath),
}

impl DefaultSource {
    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, DefaultSource::None)
    }
}

/// The attributes of the struct itself.
pub(crate) struct ContainerAttrs {
    /// `rename_all` (or its `deserialize = ...` half): the names the table is read with.
    pub(crate) rename_all_de: Option<RenameRule>,
    /// `rename_all` (or its `serialize = ...` half): the names a default serializes to.
    pub(crate) rename_all_ser: Option<RenameRule>,
    pub(crate) default: DefaultSource,
    pub(crate) deny_unknown_fields: bool,
    /// `#[config(crate = "...")]`: the path of the facade crate in generated code.
    pub(crate) krate: Path,
    /// `#[serde(crate = "...")]`: the path of serde, for the bounds of generic structs.
    pub(crate) serde: Path,
}

/// The attributes of one field.
pub(crate) struct FieldAttrs {
    /// `rename` (or its `deserialize = ...` half).
    pub(crate) rename_de: Option<String>,
    /// `rename` (or its `serialize = ...` half).
    pub(crate) rename_ser: Option<String>,
    /// `skip` or `skip_deserializing`: the table never holds it.
    pub(crate) skip: bool,
    pub(crate) default: DefaultSource,
    /// `#[config(any)]`.
    pub(crate) any: bool,
    /// `#[config(like = Type)]`: the kind of another type (a `Duration` read from a
    /// `"5s"` string is `like = String`).
    pub(crate) like: Option<syn::Type>,
    /// `#[config(help = "...")]`.
    pub(crate) help: Option<String>,
}

/// Collects several errors so one compilation reports them all.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records the error of `result`, if any.
    pub(crate) fn check(&mut self, result: syn::Result<()>) {
        if let Err(error) = result {
            self.push(error);
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The error for a serde attribute the derive cannot describe.
fn unsupported(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Error {
    meta.error(format!(
        "#[derive(ConfigSchema)] does not support {what}: implement \
         plugbus_plugin_api::DescribeConfig (and ConfigType) by hand"
    ))
}

impl ContainerAttrs {
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = ContainerAttrs {
            rename_all_de: None,
            rename_all_ser: None,
            default: DefaultSource::None,
            deny_unknown_fields: false,
            krate: syn::parse_quote!(::plugbus_plugin_api),
            serde: syn::parse_quote!(::serde),
        };
        for attr in attrs {
            if attr.path().is_ident("serde") {
                errors.check(attr.parse_nested_meta(|meta| out.serde_item(&meta)));
            } else if attr.path().is_ident("config") {
                errors.check(attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("crate") {
                        out.krate = parse_path(&meta)?;
                        Ok(())
                    } else {
                        Err(meta.error(
                            "unknown #[config] attribute on a struct; expected `crate = \"...\"` \
                             (`any` and `help = \"...\"` go on fields)",
                        ))
                    }
                }));
            }
        }
        out
    }

    fn serde_item(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("rename_all") {
            let (ser, de) = ser_de_pair(meta, "rename_all")?;
            if let Some(ser) = ser {
                self.rename_all_ser = Some(rename_rule(&ser)?);
            }
            if let Some(de) = de {
                self.rename_all_de = Some(rename_rule(&de)?);
            }
        } else if path.is_ident("default") {
            self.default = default_source(meta)?;
        } else if path.is_ident("deny_unknown_fields") {
            self.deny_unknown_fields = true;
        } else if path.is_ident("crate") {
            self.serde = parse_path(meta)?;
        } else if path.is_ident("transparent") {
            return Err(unsupported(meta, "#[serde(transparent)]"));
        } else if path.is_ident("from") || path.is_ident("try_from") {
            skip_value(meta)?;
            return Err(unsupported(
                meta,
                "#[serde(from)] or #[serde(try_from)] (the table is read as another type; \
                 its schema is that type's)",
            ));
        } else {
            skip_value(meta)?;
        }
        Ok(())
    }
}

impl FieldAttrs {
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = FieldAttrs {
            rename_de: None,
            rename_ser: None,
            skip: false,
            default: DefaultSource::None,
            any: false,
            like: None,
            help: None,
        };
        for attr in attrs {
            if attr.path().is_ident("serde") {
                errors.check(attr.parse_nested_meta(|meta| out.serde_item(&meta)));
            } else if attr.path().is_ident("config") {
                errors.check(attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("any") {
                        out.any = true;
                        Ok(())
                    } else if meta.path.is_ident("like") {
                        out.like = Some(meta.value()?.parse()?);
                        Ok(())
                    } else if meta.path.is_ident("help") {
                        let help: LitStr = meta.value()?.parse()?;
                        out.help = Some(help.value());
                        Ok(())
                    } else {
                        Err(meta.error(
                            "unknown #[config] attribute on a field; expected `any`, \
                             `like = Type` or `help = \"...\"`",
                        ))
                    }
                }));
            }
        }
        out
    }

    fn serde_item(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("rename") {
            let (ser, de) = ser_de_pair(meta, "rename")?;
            if let Some(ser) = ser {
                self.rename_ser = Some(ser.value());
            }
            if let Some(de) = de {
                self.rename_de = Some(de.value());
            }
        } else if path.is_ident("skip") || path.is_ident("skip_deserializing") {
            self.skip = true;
        } else if path.is_ident("default") {
            self.default = default_source(meta)?;
        } else if path.is_ident("flatten") {
            return Err(unsupported(
                meta,
                "#[serde(flatten)] (its keys are not known to the macro)",
            ));
        } else {
            // `alias`, `with`, `skip_serializing_if`, `borrow`, ...: no change to the keys.
            skip_value(meta)?;
        }
        Ok(())
    }
}

/// `name = "x"` (both halves) or `name(serialize = "x", deserialize = "y")` (either or both).
fn ser_de_pair(
    meta: &ParseNestedMeta<'_>,
    name: &str,
) -> syn::Result<(Option<LitStr>, Option<LitStr>)> {
    if meta.input.peek(syn::Token![=]) {
        let value: LitStr = meta.value()?.parse()?;
        return Ok((Some(value.clone()), Some(value)));
    }
    let (mut ser, mut de) = (None, None);
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            ser = Some(inner.value()?.parse()?);
            Ok(())
        } else if inner.path.is_ident("deserialize") {
            de = Some(inner.value()?.parse()?);
            Ok(())
        } else {
            Err(inner.error(format!(
                "expected `serialize = \"...\"` or `deserialize = \"...\"` in #[serde({name}(...))]"
            )))
        }
    })?;
    Ok((ser, de))
}

fn rename_rule(lit: &LitStr) -> syn::Result<RenameRule> {
    RenameRule::from_name(&lit.value()).ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            format!(
                "unknown rename rule {:?} in #[serde(rename_all)]; expected one of {}",
                lit.value(),
                RenameRule::names()
            ),
        )
    })
}

/// `default` or `default = "path"`.
fn default_source(meta: &ParseNestedMeta<'_>) -> syn::Result<DefaultSource> {
    if meta.input.peek(syn::Token![=]) {
        let lit: LitStr = meta.value()?.parse()?;
        Ok(DefaultSource::Function(lit.parse()?))
    } else {
        Ok(DefaultSource::Trait)
    }
}

/// `crate = "some::path"`.
fn parse_path(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let lit: LitStr = meta.value()?.parse()?;
    lit.parse()
}

/// Consumes whatever follows an item the derive does not care about (`= "..."`, `(...)`),
/// up to the next comma.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    meta.input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// The first paragraph of the doc comments: each line trimmed, the lines joined with a space.
pub(crate) fn doc_help(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }) = &nv.value
            {
                lines.extend(text.value().split('\n').map(|line| line.trim().to_owned()));
            }
        }
    }
    lines
        .iter()
        .map(String::as_str)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn help_is_the_first_paragraph_trimmed_and_joined() {
        let field: syn::Field = parse_quote! {
            ///
            ///   Failed logins within the window
            /// that raise an alert.
            ///
            /// Not this paragraph.
            threshold: u32
        };
        assert_eq!(
            doc_help(&field.attrs),
            "Failed logins within the window that raise an alert."
        );
        let block: syn::Field = parse_quote! {
            /** One line,
                and another.

                Not this. */
            x: u8
        };
        assert_eq!(doc_help(&block.attrs), "One line, and another.");
        let none: syn::Field = parse_quote!(x: u8);
        assert_eq!(doc_help(&none.attrs), "");
    }

    #[test]
    fn serde_items_the_derive_ignores_are_skipped_whole() {
        let field: syn::Field = parse_quote! {
            #[serde(alias = "a", with = "x::y", rename(serialize = "s", deserialize = "d"))]
            #[serde(skip_serializing_if = "Option::is_none", default = "five")]
            x: Option<u8>
        };
        let mut errors = Errors::default();
        let attrs = FieldAttrs::parse(&field.attrs, &mut errors);
        assert!(errors.finish().is_ok());
        assert_eq!(attrs.rename_de.as_deref(), Some("d"));
        assert_eq!(attrs.rename_ser.as_deref(), Some("s"));
        assert!(matches!(attrs.default, DefaultSource::Function(_)));
        assert!(!attrs.skip);
    }
}
