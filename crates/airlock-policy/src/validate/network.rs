//! `[network]`: allow and deny entries, HTTP method/path rules, `allow_private`.

use globset::GlobBuilder;

use crate::address::covered_metadata;
use crate::host::Endpoint;
use crate::policy::{HttpPath, HttpRule, NetRule, NetworkRules};
use crate::schema::DefaultAction;
use crate::source::Layer;
use crate::validation_error::ValidationError;

use super::ctx::{Ctx, all, last};

impl Ctx<'_> {
    pub(super) fn endpoint(&mut self, src: usize, key: &str, text: &str) -> Option<Endpoint> {
        match Endpoint::parse(text) {
            Ok(e) => Some(e),
            Err(problem) => {
                self.error(
                    src,
                    key,
                    ValidationError::BadHostPattern {
                        found: text.to_owned(),
                        problem,
                    },
                );
                None
            }
        }
    }

    /// Refuses an allow entry whose block covers a metadata address: at run time it would not
    /// open that address (only an exact entry does), so the entry would say more than it does.
    fn no_metadata_block(&mut self, src: usize, key: &str, text: &str, endpoint: &Endpoint) {
        if let Some(o) = covered_metadata(endpoint.host()) {
            self.error(
                src,
                key,
                ValidationError::CoversMetadata {
                    found: text.to_owned(),
                    block: o.block,
                    serves: o.serves,
                },
            );
        }
    }

    pub(super) fn network(&mut self, layers: &[Layer]) -> NetworkRules {
        let default_allow = last(layers, "network.default", |f| &f.network.default)
            .is_some_and(|it| *it.value == DefaultAction::Allow);
        let allow_private = last(layers, "network.allow_private", |f| {
            &f.network.allow_private
        })
        .is_some_and(|it| *it.value);
        let mut rules = Vec::new();
        for (key, allow) in [("network.allow", true), ("network.deny", false)] {
            let items = all(layers, key, |f| {
                if allow {
                    &f.network.allow
                } else {
                    &f.network.deny
                }
            });
            for it in items {
                if let Some(endpoint) = self.endpoint(it.src, &it.key, it.value) {
                    if allow {
                        self.no_metadata_block(it.src, &it.key, it.value, &endpoint);
                    }
                    rules.push(NetRule {
                        endpoint,
                        allow,
                        rule: self.rule_name(it.src, &it.key, it.value),
                    });
                }
            }
        }
        let mut http = Vec::new();
        for it in all(layers, "network.http", |f| &f.network.http) {
            let r = it.value;
            let endpoint = self.endpoint(it.src, &format!("{}.host", it.key), &r.host);
            let mut methods = Vec::new();
            for (i, m) in r.methods.iter().enumerate() {
                if !m.is_empty()
                    && m.len() <= 32
                    && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
                {
                    methods.push(m.to_ascii_uppercase());
                } else {
                    self.error(
                        it.src,
                        &format!("{}.methods[{i}]", it.key),
                        ValidationError::BadMethod { found: m.clone() },
                    );
                }
            }
            let path = match &r.path {
                None => Some(None),
                Some(p) => match http_path(p) {
                    Ok(hp) => Some(Some(hp)),
                    Err(problem) => {
                        self.error(
                            it.src,
                            &format!("{}.path", it.key),
                            ValidationError::BadHttpPath {
                                found: p.clone(),
                                problem,
                            },
                        );
                        None
                    }
                },
            };
            if let Some(endpoint) = &endpoint
                && r.action == DefaultAction::Allow
            {
                self.no_metadata_block(it.src, &format!("{}.host", it.key), &r.host, endpoint);
            }
            if let (Some(endpoint), Some(path)) = (endpoint, path) {
                let text = format!(
                    "{} {}{}",
                    if methods.is_empty() {
                        "*".to_owned()
                    } else {
                        methods.join(",")
                    },
                    r.host,
                    r.path.as_deref().unwrap_or("")
                );
                http.push(HttpRule {
                    endpoint,
                    methods,
                    path,
                    allow: r.action == DefaultAction::Allow,
                    rule: self.rule_name(it.src, &it.key, &text),
                });
            }
        }
        let trust_host_ca = last(layers, "network.trust_host_ca", |f| {
            &f.network.trust_host_ca
        })
        .is_some_and(|it| *it.value);
        let mut extra_ca = Vec::new();
        for it in all(layers, "network.extra_ca", |f| &f.network.extra_ca) {
            if let Some(path) = self.host_path(it.src, &it.key, it.value) {
                extra_ca.push(path);
            }
        }
        let mut passthrough = Vec::new();
        let mut passthrough_rules = Vec::new();
        for it in all(layers, "network.passthrough", |f| &f.network.passthrough) {
            if let Some(endpoint) = self.endpoint(it.src, &it.key, it.value) {
                passthrough_rules.push(self.rule_name(it.src, &it.key, it.value));
                passthrough.push(endpoint);
            }
        }
        let credentials = self.credentials(layers, &passthrough, &passthrough_rules);
        NetworkRules {
            default_allow,
            rules,
            allow_private,
            http,
            credentials,
            trust_host_ca,
            extra_ca,
            passthrough,
        }
    }
}

fn http_path(glob: &str) -> Result<HttpPath, String> {
    if !glob.starts_with('/') {
        return Err("does not start with `/`".to_owned());
    }
    if glob.split('/').any(|c| c == ".." || c == ".") {
        return Err("`.` and `..` segments are not allowed".to_owned());
    }
    let matcher = GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())?
        .compile_matcher();
    let literal_len = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    Ok(HttpPath {
        matcher,
        literal_len,
    })
}
