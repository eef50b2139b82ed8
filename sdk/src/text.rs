//! Small text helpers exporters share: a safe file name for an export, and
//! a JSON string literal for plugins that write JSON without a serializer.

/// `name` as a bare file name: anything but `[A-Za-z0-9._-]` becomes `_`,
/// and a name that would be empty or only dots becomes `export`. The host
/// checks every export name again; this is what a plugin proposes.
///
/// ```
/// assert_eq!(wharf_sdk::text::file_name("set 1/../x"), "set_1_.._x");
/// assert_eq!(wharf_sdk::text::file_name(".."), "export");
/// ```
pub fn file_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        "export".into()
    } else {
        name
    }
}

/// `text` as a JSON string literal, quotes included, with `"`, `\` and
/// control characters escaped.
///
/// ```
/// assert_eq!(wharf_sdk::text::json_string("a \"b\"\n"), r#""a \"b\"\n""#);
/// ```
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
