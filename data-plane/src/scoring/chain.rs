//! The fallback chain: the best candidate first, then backups chosen for
//! diversity, so one provider's outage or one model family's weakness does not
//! take the whole chain down. The first backup is the best candidate on a
//! different provider wherever one is eligible; each later one prefers, in this
//! order, a provider, model family, region and tier not yet in the chain, and
//! the higher score among equally diverse candidates.

use switchyard_domain::ModelSpec;

/// Picks up to `length` candidates. `specs[i]` is candidate i's model, and
/// candidates are in score order (best first). Returns indices into them.
pub fn build(specs: &[&ModelSpec], length: usize) -> Vec<usize> {
    let mut chain: Vec<usize> = Vec::with_capacity(length.min(specs.len()));
    if specs.is_empty() || length == 0 {
        return chain;
    }
    chain.push(0);
    while chain.len() < length.min(specs.len()) {
        let first_backup = chain.len() == 1;
        let novelty = |i: usize| {
            let s = specs[i];
            let new = |same: &dyn Fn(&ModelSpec) -> bool| !chain.iter().any(|&c| same(specs[c]));
            let provider = new(&|c| c.provider == s.provider);
            if first_backup {
                // Only the provider matters here; the score decides the rest.
                return (provider, false, false, false);
            }
            (
                provider,
                new(&|c| c.family == s.family),
                new(&|c| c.region == s.region),
                new(&|c| c.tier == s.tier),
            )
        };
        // The lowest index wins ties on novelty: candidates are in score order.
        let next = (0..specs.len())
            .filter(|i| !chain.contains(i))
            .max_by(|&a, &b| novelty(a).cmp(&novelty(b)).then(b.cmp(&a)));
        match next {
            Some(i) => chain.push(i),
            None => break,
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use switchyard_domain::{Capabilities, Tier};

    use super::*;

    fn spec(provider: &str, family: &str, region: &str, tier: Tier) -> ModelSpec {
        ModelSpec {
            provider: provider.into(),
            name: format!("{family}-m"),
            family: family.into(),
            capabilities: Capabilities::default(),
            context_window: 1000,
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 1.0,
            region: region.into(),
            tier,
            aliases: vec![],
            enabled: true,
            circuit: switchyard_domain::CircuitMode::Auto,
        }
    }

    #[test]
    fn first_backup_is_on_another_provider_even_when_it_scores_lower() {
        let specs = [
            spec("a", "f1", "us", Tier::Standard),
            spec("a", "f2", "eu", Tier::Frontier),
            spec("b", "f1", "us", Tier::Standard),
        ];
        let refs: Vec<&ModelSpec> = specs.iter().collect();
        assert_eq!(build(&refs, 3), vec![0, 2, 1]);
    }

    #[test]
    fn later_backups_prefer_a_new_family_then_region_then_tier() {
        let specs = [
            spec("a", "f1", "us", Tier::Standard),
            spec("b", "f1", "us", Tier::Standard),
            spec("c", "f1", "us", Tier::Economy),
            spec("c", "f2", "us", Tier::Standard),
        ];
        let refs: Vec<&ModelSpec> = specs.iter().collect();
        // The first backup is the best on another provider (b); after a and b,
        // provider c is new for both 2 and 3, and 3 also brings a new family.
        assert_eq!(build(&refs, 3), vec![0, 1, 3]);
    }

    #[test]
    fn one_provider_only_keeps_score_order_and_length_is_respected() {
        let specs = [
            spec("a", "f1", "us", Tier::Standard),
            spec("a", "f1", "us", Tier::Standard),
            spec("a", "f1", "us", Tier::Standard),
        ];
        let refs: Vec<&ModelSpec> = specs.iter().collect();
        assert_eq!(build(&refs, 2), vec![0, 1]);
        assert_eq!(build(&refs, 10), vec![0, 1, 2]);
        assert!(build(&[], 3).is_empty());
    }
}
