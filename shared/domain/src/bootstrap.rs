//! The optional bootstrap file (`examples/switchyard.yaml`): registry entries the
//! control plane upserts at start. User-written, so unknown keys are errors.

use serde::Deserialize;

use crate::{BootstrapKey, ModelSpec, ProviderSpec, StrategySpec, ValidationError, WorkspaceSpec};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub strategies: Vec<StrategySpec>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceSpec>,
    /// Keys registered at start when no key of that workspace has that name.
    #[serde(default)]
    pub api_keys: Vec<BootstrapKey>,
}

impl BootstrapConfig {
    /// Parses and validates YAML; errors name the entry and field.
    pub fn from_yaml(text: &str) -> Result<Self, ValidationError> {
        let config: Self = serde_yaml_ng::from_str(text)
            .map_err(|e| ValidationError::new("bootstrap", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        for (i, p) in self.providers.iter().enumerate() {
            p.validate()
                .map_err(|e| e.within(&format!("providers[{i}]")))?;
        }
        for (i, m) in self.models.iter().enumerate() {
            let field = format!("models[{i}]");
            m.validate().map_err(|e| e.within(&field))?;
        }
        for (i, s) in self.strategies.iter().enumerate() {
            s.validate()
                .map_err(|e| e.within(&format!("strategies[{i}]")))?;
        }
        for (i, w) in self.workspaces.iter().enumerate() {
            w.validate()
                .map_err(|e| e.within(&format!("workspaces[{i}]")))?;
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            k.validate()
                .map_err(|e| e.within(&format!("api_keys[{i}]")))?;
        }
        Ok(())
    }

    /// Drops the providers `keep` rejects, and their models.
    pub fn retain_providers(&mut self, mut keep: impl FnMut(&ProviderSpec) -> bool) {
        self.providers.retain(|p| keep(p));
        let names: Vec<String> = self.providers.iter().map(|p| p.name.clone()).collect();
        self.models.retain(|m| names.contains(&m.provider));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/switchyard.yaml");

    #[test]
    fn the_shipped_example_is_valid() {
        let config = BootstrapConfig::from_yaml(EXAMPLE).unwrap();
        assert!(!config.providers.is_empty());
        assert!(!config.models.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = BootstrapConfig::from_yaml(
            "providers:\n  - name: a\n    kind: simulated\n    colour: red\n",
        )
        .unwrap_err();
        assert!(err.message.contains("colour"), "{err}");

        let err = BootstrapConfig::from_yaml("providers:\n  - name: a\n    kind: simulated\n")
            .unwrap_err();
        assert_eq!(err.field, "providers[0].simulated");

        let err = BootstrapConfig::from_yaml("providers: {not: [a list").unwrap_err();
        assert_eq!(err.field, "bootstrap");
    }

    #[test]
    fn a_models_circuit_override_is_read_and_a_bad_one_named() {
        let yaml = |circuit: &str| {
            format!(
                "providers:\n  - {{ name: a, kind: simulated, simulated: {{}} }}\nmodels:\n  - \
                 {{ provider: a, name: m, family: f, context_window: 8, input_price_per_mtok: 1, \
                 output_price_per_mtok: 1, tier: economy{circuit} }}\n"
            )
        };
        let config = BootstrapConfig::from_yaml(&yaml("")).unwrap();
        assert_eq!(config.models[0].circuit, crate::CircuitMode::Auto);
        let config = BootstrapConfig::from_yaml(&yaml(", circuit: open")).unwrap();
        assert_eq!(config.models[0].circuit, crate::CircuitMode::Open);

        let err = BootstrapConfig::from_yaml(&yaml(", circuit: half")).unwrap_err();
        assert!(
            err.message.contains("models[0].circuit") && err.message.contains("half"),
            "{err}"
        );
    }

    #[test]
    fn retain_providers_drops_their_models() {
        let mut config = BootstrapConfig::from_yaml(EXAMPLE).unwrap();
        config.retain_providers(|p| p.kind == crate::ProviderKind::Simulated);
        assert!(
            config
                .models
                .iter()
                .all(|m| config.providers.iter().any(|p| p.name == m.provider))
        );
        assert!(
            config
                .providers
                .iter()
                .all(|p| p.kind == crate::ProviderKind::Simulated)
        );
    }
}
