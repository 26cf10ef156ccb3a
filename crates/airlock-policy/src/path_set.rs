//! [`PathRules`]: a list of [`PathRule`]s matched in one pass.
//!
//! The filesystem gateway asks for a decision on every request, and a mutation is checked
//! against the built-in protected paths (41 case-insensitive globs, most with ancestor forms),
//! `deny_write` and `deny_read`. Testing each glob on its own ran a regex per glob: a tenth of
//! the gateway's CPU time while untarring into the share. Here every glob of every rule sits in
//! one `GlobSet`, so a path costs one walk of one automaton, and the answer is the same as
//! testing the rules one by one in order (a property test checks this).

use globset::{GlobSet, GlobSetBuilder};

use crate::path::{PathMatch, PathRule};

/// Rules in policy order, with all their globs compiled into one set.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    rules: Vec<PathRule>,
    /// `None` when the combined set cannot be built (it never was in practice, but the regex
    /// engine has size limits): then each rule is tested on its own, as before.
    set: Option<GlobSet>,
    /// For glob `i` of `set`: the index of its rule and what a hit on it means.
    owners: Vec<(usize, PathMatch)>,
}

impl PathRules {
    pub fn new(rules: Vec<PathRule>) -> Self {
        let mut builder = GlobSetBuilder::new();
        let mut owners = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for (glob, means) in rule.globs() {
                builder.add(glob.clone());
                owners.push((index, means));
            }
        }
        let set = builder.build().ok();
        Self { rules, set, owners }
    }

    /// The first rule (in policy order) whose relation to `path` makes `refuses` true: what
    /// `rules().iter().find(|r| refuses(r.check(path)))` returns.
    pub fn first_hit(&self, path: &str, refuses: impl Fn(PathMatch) -> bool) -> Option<&PathRule> {
        let Some(set) = &self.set else {
            return self.rules.iter().find(|r| refuses(r.check(path)));
        };
        // `PathRule::check` covers nothing at the share root.
        let mut best = vec![PathMatch::No; self.rules.len()];
        if !path.is_empty() {
            for hit in set.matches(path) {
                let Some(&(index, means)) = self.owners.get(hit) else {
                    continue;
                };
                if let Some(b) = best.get_mut(index)
                    && strength(means) > strength(*b)
                {
                    *b = means;
                }
            }
        }
        self.rules
            .iter()
            .zip(best)
            .find(|(_, m)| refuses(*m))
            .map(|(r, _)| r)
    }
}

/// `PathRule::check`'s precedence: a direct match beats an ancestor, which beats a deep one.
fn strength(m: PathMatch) -> u8 {
    match m {
        PathMatch::No => 0,
        PathMatch::DeepAncestor => 1,
        PathMatch::Ancestor => 2,
        PathMatch::Direct => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::builtin_rules;
    use proptest::prelude::*;

    fn builtin() -> Vec<PathRule> {
        builtin_rules()
            .iter()
            .map(|r| r.clone().expect("the built-in table compiles"))
            .collect()
    }

    fn user_rules() -> Vec<PathRule> {
        [
            ("secrets/**", false),
            ("*.pem", true),
            ("vendor/keys/*.pem", false),
            (".env", true),
            ("a/**/b/c", false),
            ("**", false),
        ]
        .iter()
        .enumerate()
        .map(|(i, (g, anywhere))| {
            PathRule::compile(format!("r[{i}] {g:?}"), g, *anywhere, false).unwrap()
        })
        .collect()
    }

    /// Path components that the rules above care about, in several cases, and some that no
    /// rule names.
    fn component() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            ".git",
            ".GIT",
            "hooks",
            "config",
            "modules",
            "info",
            ".env",
            "secrets",
            "vendor",
            "keys",
            "k.pem",
            "K.PEM",
            "a",
            "b",
            "c",
            "src",
            "main.rs",
            ".vscode",
            "settings.json",
            ".claude",
            ".envrc",
            "x",
            "Makefile",
            ".bashrc",
            ".ssh",
        ])
        .prop_map(str::to_owned)
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(component(), 0..6).prop_map(|c| c.join("/"))
    }

    fn naive<'a>(
        rules: &'a [PathRule],
        path: &str,
        refuses: impl Fn(PathMatch) -> bool,
    ) -> Option<&'a PathRule> {
        rules.iter().find(|r| refuses(r.check(path)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn one_pass_decides_as_rule_by_rule(p in path(), which in 0u8..4) {
            for rules in [builtin(), user_rules()] {
                let set = PathRules::new(rules.clone());
                prop_assert!(set.set.is_some());
                // The questions decide.rs asks: any relation, direct only, direct or ancestor,
                // and a predicate that also holds for no relation at all.
                let refuses = |m: PathMatch| match which {
                    0 => m != PathMatch::No,
                    1 => m == PathMatch::Direct,
                    2 => matches!(m, PathMatch::Direct | PathMatch::Ancestor),
                    _ => true,
                };
                let want = naive(&rules, &p, refuses).map(|r| r.rule.clone());
                let got = set.first_hit(&p, refuses).map(|r| r.rule.clone());
                prop_assert_eq!(got, want, "path {:?}", p);
            }
        }
    }

    #[test]
    fn the_share_root_is_covered_by_no_rule() {
        let set = PathRules::new(user_rules());
        assert!(set.first_hit("", |m| m != PathMatch::No).is_none());
        assert_eq!(
            set.first_hit("", |_| true).map(|r| r.rule.as_str()),
            Some("r[0] \"secrets/**\"")
        );
    }

    #[test]
    fn an_empty_list_refuses_nothing() {
        assert!(PathRules::default().first_hit("a", |_| true).is_none());
        assert!(
            PathRules::new(Vec::new())
                .first_hit("a", |_| true)
                .is_none()
        );
    }
}
