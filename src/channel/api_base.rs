//! A platform API's base URL, parsed once when its channel is built. Each request
//! clones it and appends its own path segments: parsing the URL again per request,
//! host check and all, was about 2 % of the process's CPU when draining.

/// A parsed base URL, or why the configured one cannot be used (reported by each
/// send that needs it, as a permanent error: config validation refuses it first).
#[derive(Debug, Clone)]
pub struct ApiBase {
    parsed: Result<url::Url, String>,
    /// The setting it comes from, for errors, e.g. `graph_api_base`.
    setting: &'static str,
}

impl ApiBase {
    /// Parses `base`; `setting` names it in errors, e.g. `graph_api_base`.
    pub fn parse(base: &str, setting: &'static str) -> Self {
        // url's parse errors name the problem, never the input.
        let parsed = url::Url::parse(base).map_err(|e| e.to_string());
        Self { parsed, setting }
    }

    /// The base with `segments` appended, each percent-encoded as one path segment;
    /// the error says what is wrong with the base, never the URL.
    pub fn join(&self, segments: &[&str]) -> Result<url::Url, String> {
        let mut url = self.parsed.clone()?;
        url.path_segments_mut()
            .map_err(|()| format!("{} cannot have a path", self.setting))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_appended_to_the_base_path_each_encoded_whole() {
        let base = ApiBase::parse("https://graph.facebook.com/v23.0/", "graph_api_base");
        let url = base.join(&["a/b?c", "messages"]).expect("url");
        assert_eq!(
            url.as_str(),
            "https://graph.facebook.com/v23.0/a%2Fb%3Fc/messages"
        );
    }

    #[test]
    fn a_base_that_cannot_take_a_path_is_named_by_its_setting() {
        let base = ApiBase::parse("mailto:bot@example.com", "api_base");
        assert_eq!(
            base.join(&["x"]).unwrap_err(),
            "api_base cannot have a path"
        );
    }

    #[test]
    fn an_unparsable_base_gives_the_reason_without_the_input() {
        let error = ApiBase::parse("not a url", "api_base")
            .join(&["x"])
            .unwrap_err();
        assert_eq!(error, "relative URL without a base");
    }
}
