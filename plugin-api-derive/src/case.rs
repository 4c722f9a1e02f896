//! `#[serde(rename_all = "...")]`: the rules serde applies to a field's name.

/// One of serde's renaming rules, as applied to a struct field (a `snake_case` identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenameRule {
    /// `lowercase`
    Lower,
    /// `UPPERCASE`
    Upper,
    /// `PascalCase`
    Pascal,
    /// `camelCase`
    Camel,
    /// `snake_case`
    Snake,
    /// `SCREAMING_SNAKE_CASE`
    ScreamingSnake,
    /// `kebab-case`
    Kebab,
    /// `SCREAMING-KEBAB-CASE`
    ScreamingKebab,
}

/// Every rule, by the name serde spells it with.
pub(crate) const RULES: [(&str, RenameRule); 8] = [
    ("lowercase", RenameRule::Lower),
    ("UPPERCASE", RenameRule::Upper),
    ("PascalCase", RenameRule::Pascal),
    ("camelCase", RenameRule::Camel),
    ("snake_case", RenameRule::Snake),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ("kebab-case", RenameRule::Kebab),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
];

impl RenameRule {
    /// The rule serde names `name`, if any.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        RULES
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|(_, rule)| *rule)
    }

    /// The names accepted by [`from_name`](Self::from_name), quoted, for an error message.
    pub(crate) fn names() -> String {
        RULES
            .iter()
            .map(|(spelling, _)| format!("\"{spelling}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key serde reads for a field named `field` (already `snake_case`, as Rust fields
    /// are): `lowercase` and `snake_case` leave it as it is.
    pub(crate) fn apply(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_owned(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => pascal(field),
            RenameRule::Camel => {
                let pascal = pascal(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// `snake_case` to `PascalCase`: underscores dropped, the letter after each one (and the
/// first) in upper case.
fn pascal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper_next = true;
    for c in field.chars() {
        if c == '_' {
            upper_next = true;
        } else if upper_next {
            out.push(c.to_ascii_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_on_a_two_word_field() {
        let cases = [
            ("lowercase", "max_batch"),
            ("UPPERCASE", "MAX_BATCH"),
            ("PascalCase", "MaxBatch"),
            ("camelCase", "maxBatch"),
            ("snake_case", "max_batch"),
            ("SCREAMING_SNAKE_CASE", "MAX_BATCH"),
            ("kebab-case", "max-batch"),
            ("SCREAMING-KEBAB-CASE", "MAX-BATCH"),
        ];
        for (name, expected) in cases {
            let rule = RenameRule::from_name(name);
            assert!(rule.is_some(), "{name} not recognised");
            if let Some(rule) = rule {
                assert_eq!(rule.apply("max_batch"), expected, "{name}");
            }
        }
        assert_eq!(RenameRule::from_name("Kebab-Case"), None);
    }

    #[test]
    fn single_words_digits_and_repeated_underscores() {
        assert_eq!(RenameRule::Camel.apply("port"), "port");
        assert_eq!(RenameRule::Pascal.apply("port"), "Port");
        assert_eq!(RenameRule::Pascal.apply("ipv4_addr"), "Ipv4Addr");
        assert_eq!(RenameRule::Camel.apply("a__b"), "aB");
        assert_eq!(RenameRule::Kebab.apply("a__b"), "a--b");
        assert_eq!(RenameRule::Camel.apply(""), "");
    }
}
