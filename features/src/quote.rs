//! Input echoed into messages, manifests and quarantine notes, briefly: a 50 MB header
//! line must not become 50 MB of stderr. Every value from an input that a message
//! quotes passes through here.

/// The most characters of one input value a message quotes.
pub const MAX_QUOTE_CHARS: usize = 200;

/// `s` whole when short; otherwise its first [`MAX_QUOTE_CHARS`] characters and how
/// long it was.
pub fn brief(s: &str) -> String {
    let mut chars = s.char_indices();
    match chars.nth(MAX_QUOTE_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}… ({} characters)", &s[..end], s.chars().count()),
    }
}

/// Items joined with `sep`, cut after about [`MAX_QUOTE_CHARS`] characters in all with a
/// count of the rest.
pub fn list<S: AsRef<str>>(items: &[S], sep: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        let item = brief(item.as_ref());
        if i > 0 && out.chars().count() + item.chars().count() > MAX_QUOTE_CHARS {
            out.push_str(&format!("… and {} more", items.len() - i));
            return out;
        }
        out.push_str(&item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_their_length() {
        assert_eq!(brief("short"), "short");
        let long = "é".repeat(50_000);
        let q = brief(&long);
        assert!(q.chars().count() < MAX_QUOTE_CHARS + 30, "{q}");
        assert!(q.ends_with("… (50000 characters)"));
        assert_eq!(
            brief(&"x".repeat(MAX_QUOTE_CHARS)),
            "x".repeat(MAX_QUOTE_CHARS)
        );
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        assert_eq!(list(&["a", "b"], ", "), "a, b");
        let many: Vec<String> = (0..10_000).map(|i| format!("column{i}")).collect();
        let q = list(&many, ", ");
        assert!(q.len() < 2 * MAX_QUOTE_CHARS, "{q}");
        assert!(q.ends_with("more"), "{q}");
        // One huge item is cut on its own.
        assert!(list(&["x".repeat(1 << 20)], ",").len() < 2 * MAX_QUOTE_CHARS);
    }
}
