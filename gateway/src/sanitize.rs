//! Content sanitising for chat messages (docs/protocol.md, "Namespaces and events"): HTML tags are removed, each
//! banned word is replaced by `***` case-insensitively, surrounding white space is trimmed.

/// The sanitiser of one node, built from `BANNED_WORDS`.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    banned: Vec<Vec<char>>,
}

/// The replacement of a banned word.
pub const MASK: &str = "***";

impl Sanitizer {
    /// A sanitiser replacing `banned_words` (blank entries are ignored).
    pub fn new<S: AsRef<str>>(banned_words: &[S]) -> Self {
        let banned = banned_words
            .iter()
            .map(|w| w.as_ref().trim())
            .filter(|w| !w.is_empty())
            .map(|w| w.chars().flat_map(char::to_lowercase).collect())
            .collect();
        Self { banned }
    }

    /// The cleaned text, or `None` when nothing is left after cleaning.
    pub fn clean(&self, text: &str) -> Option<String> {
        let without_tags = strip_tags(text);
        let masked = self.mask_banned(&without_tags);
        let trimmed = masked.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    fn mask_banned(&self, text: &str) -> String {
        if self.banned.is_empty() {
            return text.to_owned();
        }
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'outer: while i < chars.len() {
            for word in &self.banned {
                if matches_at(&chars, i, word) {
                    out.push_str(MASK);
                    i += word.len();
                    continue 'outer;
                }
            }
            out.push(chars[i]);
            i += 1;
        }
        out
    }
}

/// Whether `word` (lower case) starts at `chars[at]`, ignoring case.
fn matches_at(chars: &[char], at: usize, word: &[char]) -> bool {
    chars.len() - at >= word.len()
        && chars[at..at + word.len()]
            .iter()
            .zip(word)
            .all(|(c, w)| c == w || c.to_lowercase().eq(std::iter::once(*w)))
}

/// Removes every `<...>` span (an unclosed `<` is kept as text, like `/<[^>]*>/g`).
pub fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        match rest[open..].find('>') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Sanitizer {
        Sanitizer::new(&["spam", "abuse", "inappropriate"])
    }

    #[test]
    fn tags_are_removed() {
        assert_eq!(
            default()
                .clean("<b>hi</b> <script>alert(1)</script>there")
                .as_deref(),
            Some("hi alert(1)there")
        );
        assert_eq!(strip_tags("a < b"), "a < b");
        assert_eq!(strip_tags("<img src=x onerror=alert(1)>"), "");
    }

    #[test]
    fn banned_words_are_masked_case_insensitively() {
        assert_eq!(
            default().clean("no SPAM or Abuse here").as_deref(),
            Some("no *** or *** here")
        );
        assert_eq!(default().clean("spamspam").as_deref(), Some("******"));
        assert_eq!(default().clean("héllo spam").as_deref(), Some("héllo ***"));
    }

    #[test]
    fn non_ascii_banned_words() {
        let s = Sanitizer::new(&["ÄRGER", " "]);
        assert_eq!(s.clean("kein ärger").as_deref(), Some("kein ***"));
    }

    #[test]
    fn trimmed_and_empty_is_none() {
        assert_eq!(default().clean("  hi \n").as_deref(), Some("hi"));
        assert_eq!(default().clean("   "), None);
        assert_eq!(default().clean("<p> </p>"), None);
        assert_eq!(default().clean(""), None);
    }

    #[test]
    fn no_banned_words_configured() {
        assert_eq!(
            Sanitizer::new::<&str>(&[]).clean("spam").as_deref(),
            Some("spam")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_never_leaves_tags_or_banned_words(text in ".{0,200}") {
            if let Some(clean) = default().clean(&text) {
                proptest::prop_assert!(!clean.is_empty());
                proptest::prop_assert_eq!(clean.trim(), clean.as_str());
                let lower = clean.to_lowercase();
                for word in ["spam", "abuse", "inappropriate"] {
                    proptest::prop_assert!(!lower.contains(word), "{} in {:?}", word, clean);
                }
                let open = clean.find('<');
                proptest::prop_assert!(open.is_none_or(|i| !clean[i..].contains('>')), "tag left in {:?}", clean);
            }
        }
    }
}
