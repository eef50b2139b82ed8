//! Builders for what `describe` returns.

use crate::{ParamSpec, PluginInfo};

impl PluginInfo {
    /// A plugin called `name` at `version` (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            params: Vec::new(),
        }
    }

    /// What the plugin does, in a sentence.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a parameter it accepts.
    pub fn param(mut self, param: ParamSpec) -> Self {
        self.params.push(param);
        self
    }
}

impl ParamSpec {
    /// A required parameter; give it a default with [`ParamSpec::default`].
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        ParamSpec {
            name: name.into(),
            description: description.into(),
            required: true,
            default_value: None,
        }
    }

    /// Makes the parameter optional, with this value when it is not given.
    #[allow(clippy::should_implement_trait)]
    pub fn default(mut self, value: impl Into<String>) -> Self {
        self.required = false;
        self.default_value = Some(value.into());
        self
    }

    /// Makes the parameter optional without a default.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field() {
        let info = PluginInfo::new("keep-last", "1.0.0")
            .description("keeps the newest")
            .param(ParamSpec::new("keep", "how many").default("10"))
            .param(ParamSpec::new("bucket", "where"));
        assert_eq!(info.params.len(), 2);
        assert!(!info.params[0].required);
        assert_eq!(info.params[0].default_value.as_deref(), Some("10"));
        assert!(info.params[1].required);
    }
}
