//! HANDOFF_KEYWORDS: a contact asking for a person. A whole message matches a
//! phrase when both are equal once lowercased, stripped of accents and
//! punctuation, and their spaces collapsed ("Humano!" matches "humano").

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The configured phrases, normalized once.
#[derive(Debug, Clone, Default)]
pub struct Keywords {
    phrases: Vec<String>,
}

/// Lowercase, no accents, no punctuation, single spaces.
pub fn normalize(text: &str) -> String {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Keywords {
    /// The phrases (empty ones are dropped); none: keywords are off.
    pub fn new(phrases: &[String]) -> Self {
        Self {
            phrases: phrases
                .iter()
                .map(|p| normalize(p))
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Whether `text`, as a whole, is one of the phrases.
    pub fn matches(&self, text: &str) -> bool {
        if self.phrases.is_empty() {
            return false;
        }
        let text = normalize(text);
        self.phrases.contains(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords() -> Keywords {
        Keywords::new(&["humano".into(), "Talk to a person".into(), " ".into()])
    }

    #[test]
    fn a_whole_message_matches_ignoring_case_accents_and_punctuation() {
        let k = keywords();
        assert!(k.matches("HUMANO!"));
        assert!(k.matches("  Humáno. "));
        assert!(k.matches("talk to a person?"));
        assert!(k.matches("Talk  to  a... person"));
    }

    #[test]
    fn a_phrase_inside_a_longer_message_does_not_match() {
        let k = keywords();
        assert!(!k.matches("I want a humano now"));
        assert!(!k.matches(""));
    }

    #[test]
    fn no_phrases_match_nothing() {
        assert!(!Keywords::new(&[]).matches("humano"));
    }
}
