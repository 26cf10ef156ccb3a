//! Paths and path globs inside a share, and the built-in protected paths.
//!
//! Everything here is pure text: a path is normalised relative to the share root (leading `/`
//! stripped, `.` and empty components dropped, `..` refused) and globs are matched against that
//! text, so a rule covers files that do not exist yet and no symlink on the host is followed.
//! `validate.rs` compiles the rules; `decide.rs` matches requests against them.

use std::sync::OnceLock;

use globset::{Glob, GlobBuilder, GlobMatcher};

/// Longest relative path accepted from a request (a few times Linux's `PATH_MAX`).
const MAX_PATH_LEN: usize = 16 * 1024;

/// One built-in protected entry: write-protected inside every share with `protected = true`
/// (the default) unless named in `filesystem.unprotect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectedEntry {
    /// The glob as documented and as `unprotect` must name it.
    pub pattern: &'static str,
    /// Matched at any depth of the share (`**/` prefix), not only at its root.
    pub anywhere: bool,
    /// What on the host would execute or trust the file later.
    pub reason: &'static str,
}

/// The built-in protected paths. Each is something the host user's tools later execute or
/// trust, so a write from the guest would be code execution on the host.
pub const BUILTIN_PROTECTED: &[ProtectedEntry] = &[
    ProtectedEntry {
        pattern: ".git/hooks/**",
        anywhere: true,
        reason: "git runs hooks on commit, checkout, merge and push",
    },
    ProtectedEntry {
        pattern: ".git/config",
        anywhere: true,
        reason: "core.fsmonitor, core.hooksPath, aliases and filters run commands, even from a \
                 shell prompt that calls `git status`",
    },
    ProtectedEntry {
        pattern: ".git/config.worktree",
        anywhere: true,
        reason: "per-worktree config, read like .git/config when extensions.worktreeConfig is set",
    },
    ProtectedEntry {
        pattern: ".git/commondir",
        anywhere: true,
        reason: "points git at another directory's config and hooks",
    },
    ProtectedEntry {
        pattern: ".git/modules/**/hooks/**",
        anywhere: true,
        reason: "hooks of submodules, run by git inside each submodule",
    },
    ProtectedEntry {
        pattern: ".git/modules/**/config",
        anywhere: true,
        reason: "config of submodules, as dangerous as .git/config",
    },
    ProtectedEntry {
        pattern: ".git/worktrees/*/commondir",
        anywhere: true,
        reason: "points a linked worktree's git at another directory's config and hooks",
    },
    ProtectedEntry {
        pattern: ".git/worktrees/*/config.worktree",
        anywhere: true,
        reason: "a linked worktree's own config, read like .git/config",
    },
    ProtectedEntry {
        pattern: ".hg/hgrc",
        anywhere: true,
        reason: "Mercurial hooks and aliases run commands on the host",
    },
    ProtectedEntry {
        pattern: ".jj/**",
        anywhere: true,
        reason: "Jujutsu repository config and the git store it drives",
    },
    ProtectedEntry {
        pattern: ".gitmodules",
        anywhere: true,
        reason: "submodule URLs and paths, fetched by `git submodule update` on the host",
    },
    ProtectedEntry {
        pattern: ".husky/**",
        anywhere: true,
        reason: "husky hook scripts, run by git through core.hooksPath",
    },
    ProtectedEntry {
        pattern: ".pre-commit-config.yaml",
        anywhere: true,
        reason: "pre-commit runs the commands it lists from the installed git hook",
    },
    ProtectedEntry {
        pattern: ".claude/**",
        anywhere: true,
        reason: "Claude Code settings: hooks, MCP servers and allowed commands",
    },
    ProtectedEntry {
        pattern: ".codex/**",
        anywhere: true,
        reason: "Codex CLI configuration: MCP servers and sandbox settings",
    },
    ProtectedEntry {
        pattern: ".gemini/**",
        anywhere: true,
        reason: "Gemini CLI settings: MCP servers and tool commands",
    },
    ProtectedEntry {
        pattern: ".cursor/**",
        anywhere: true,
        reason: "Cursor settings and MCP servers",
    },
    ProtectedEntry {
        pattern: ".mcp.json",
        anywhere: true,
        reason: "project MCP servers, started as commands by agents on the host",
    },
    ProtectedEntry {
        pattern: ".vscode/**",
        anywhere: true,
        reason: "VS Code tasks, launch configurations and settings that name executables",
    },
    ProtectedEntry {
        pattern: ".idea/**",
        anywhere: true,
        reason: "JetBrains run configurations and startup tasks",
    },
    ProtectedEntry {
        pattern: ".devcontainer/**",
        anywhere: true,
        reason: "devcontainer.json initializeCommand runs on the host",
    },
    ProtectedEntry {
        pattern: ".envrc",
        anywhere: true,
        reason: "direnv evaluates it in the host shell on `cd`",
    },
    ProtectedEntry {
        pattern: ".direnv/**",
        anywhere: true,
        reason: "direnv's layouts and cached environments, sourced with .envrc",
    },
    ProtectedEntry {
        pattern: ".npmrc",
        anywhere: true,
        reason: "npm config: registry, scripts shell and node options for every npm command",
    },
    ProtectedEntry {
        pattern: ".yarnrc",
        anywhere: true,
        reason: "Yarn 1 config: yarn-path runs a file of the repository as yarn itself",
    },
    ProtectedEntry {
        pattern: ".yarnrc.yml",
        anywhere: true,
        reason: "Yarn config: yarnPath and plugins run files of the repository",
    },
    ProtectedEntry {
        pattern: ".pnpmfile.cjs",
        anywhere: true,
        reason: "pnpm runs its hooks on every install",
    },
    ProtectedEntry {
        pattern: "mise.toml",
        anywhere: true,
        reason: "mise tasks, hooks and env run when the shell enters the directory",
    },
    ProtectedEntry {
        pattern: ".mise.toml",
        anywhere: true,
        reason: "mise tasks, hooks and env run when the shell enters the directory",
    },
    ProtectedEntry {
        pattern: ".tool-versions",
        anywhere: true,
        reason: "asdf and mise install and run the tool versions it names",
    },
    ProtectedEntry {
        pattern: ".zed/**",
        anywhere: true,
        reason: "Zed tasks and settings that name executables",
    },
    ProtectedEntry {
        pattern: ".bashrc",
        anywhere: false,
        reason: "sourced by interactive bash when the share is a home directory",
    },
    ProtectedEntry {
        pattern: ".bash_profile",
        anywhere: false,
        reason: "sourced by bash login shells when the share is a home directory",
    },
    ProtectedEntry {
        pattern: ".bash_login",
        anywhere: false,
        reason: "sourced by bash login shells when .bash_profile is absent",
    },
    ProtectedEntry {
        pattern: ".profile",
        anywhere: false,
        reason: "sourced by POSIX login shells when the share is a home directory",
    },
    ProtectedEntry {
        pattern: ".zshrc",
        anywhere: false,
        reason: "sourced by interactive zsh when the share is a home directory",
    },
    ProtectedEntry {
        pattern: ".zprofile",
        anywhere: false,
        reason: "sourced by zsh login shells when the share is a home directory",
    },
    ProtectedEntry {
        pattern: ".zshenv",
        anywhere: false,
        reason: "sourced by every zsh, even scripts, when the share is a home directory",
    },
];

/// Why a path or glob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing left after normalisation.
    #[error("empty path")]
    Empty,
    /// A `..` component.
    #[error("`..` is not allowed")]
    ParentDir,
    /// A guest path that does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// A glob ending in `/`.
    #[error("trailing `/`; write `dir/**` for a directory's contents")]
    TrailingSlash,
    /// A NUL byte.
    #[error("NUL byte in path")]
    Nul,
    /// Longer than any real path.
    #[error("path is too long")]
    TooLong,
    /// `~user` (only `~` and `~/` are expanded).
    #[error("only `~` and `~/...` are expanded, not `~user`")]
    TildeUser,
    /// The glob syntax is wrong.
    #[error("invalid glob: {0}")]
    BadGlob(String),
}

/// Normalises a request path relative to a share root: leading `/` stripped, `.` and empty
/// components dropped, `..` refused (a lexical `..` is wrong whenever a component is a symlink,
/// so it is never collapsed). The share root itself is the empty string.
pub fn normalize_rel(path: &str) -> Result<String, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Ok(out)
}

/// The name a Unicode-aware host filesystem or tool may take `path` for: NFKC-normalised and
/// lower-cased, so `.Ｃlaude` (fullwidth) or a ligature cannot slip past a protected name.
/// `None` when that is the path itself up to ASCII case (every ASCII path), which the
/// case-insensitive protected rules already cover.
pub fn fold_name(path: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization as _;
    if path.is_ascii() {
        return None;
    }
    let lower = path.nfkc().collect::<String>().to_lowercase();
    let folded: String = lower.nfkc().collect();
    (folded != path.to_lowercase()).then_some(folded)
}

/// Normalises an absolute guest path: `/workspace/./x/` becomes `/workspace/x`.
pub fn normalize_guest(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    Ok(format!("/{}", normalize_rel(path)?))
}

/// Normalises a glob relative to a share root the same way as [`normalize_rel`], refusing a
/// trailing `/` and an empty result.
pub fn normalize_glob(glob: &str) -> Result<String, PathError> {
    if glob.len() > 1 && glob.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    let out = normalize_rel(glob)?;
    if out.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(out)
}

/// What a [`PathRule`] says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// The rule does not cover the path.
    No,
    /// The path matches the glob, or is the directory named by a glob ending in `/**`.
    Direct,
    /// The path is a directory on the way to something the glob covers, e.g. `.git` for
    /// `.git/hooks/**`: renaming, replacing or linking it would move protected files away or
    /// put attacker-made files in their place.
    Ancestor,
    /// The path lies under a `**` on the way to something the glob covers, e.g. anything under
    /// `.git/modules/` for `.git/modules/**/config`: it may be a directory holding covered
    /// paths (moving it would move them) or an ordinary file (writing it is harmless).
    DeepAncestor,
}

/// A compiled path glob with its rule name.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// The rule name reported in decisions, e.g. `filesystem.deny_write[0] "secrets/**"`.
    pub rule: String,
    matcher: GlobMatcher,
    dir: Option<GlobMatcher>,
    /// Prefixes of the glob ending in a literal component.
    ancestors: Vec<GlobMatcher>,
    /// Prefixes of the glob ending in `**`.
    deep_ancestors: Vec<GlobMatcher>,
}

impl PathRule {
    /// Compiles `glob` (already normalised by [`normalize_glob`]). With `anywhere`, the glob
    /// matches at any depth. Protected paths are matched case-insensitively, so that a
    /// case-insensitive host filesystem cannot be used to slip past them.
    pub fn compile(
        rule: String,
        glob: &str,
        anywhere: bool,
        case_insensitive: bool,
    ) -> Result<Self, PathError> {
        let full = if anywhere && !glob.starts_with("**/") {
            format!("**/{glob}")
        } else {
            glob.to_owned()
        };
        let build = |text: &str| {
            GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(case_insensitive)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| PathError::BadGlob(e.kind().to_string()))
        };
        let matcher = build(&full)?;
        let dir = match full.strip_suffix("/**") {
            Some(d) if !is_all_globstar(d) => Some(build(d)?),
            _ => None,
        };
        let components: Vec<&str> = full.split('/').collect();
        let mut ancestors = Vec::new();
        let mut deep_ancestors = Vec::new();
        for k in 1..components.len() {
            let prefix = components.get(..k).unwrap_or_default();
            if prefix.iter().all(|c| *c == "**") {
                continue;
            }
            let matcher = build(&prefix.join("/"))?;
            if prefix.last() == Some(&"**") {
                deep_ancestors.push(matcher);
            } else {
                ancestors.push(matcher);
            }
        }
        Ok(Self {
            rule,
            matcher,
            dir,
            ancestors,
            deep_ancestors,
        })
    }

    /// Every glob of the rule with what a hit on it means, for [`crate::path_set::PathRules`].
    pub(crate) fn globs(&self) -> impl Iterator<Item = (&Glob, PathMatch)> {
        let direct = std::iter::once(&self.matcher)
            .chain(self.dir.as_ref())
            .map(|m| (m.glob(), PathMatch::Direct));
        let ancestors = self
            .ancestors
            .iter()
            .map(|m| (m.glob(), PathMatch::Ancestor));
        let deep = self
            .deep_ancestors
            .iter()
            .map(|m| (m.glob(), PathMatch::DeepAncestor));
        direct.chain(ancestors).chain(deep)
    }

    /// Matches a path normalised by [`normalize_rel`].
    pub fn check(&self, path: &str) -> PathMatch {
        if path.is_empty() {
            // The share root is an ancestor of everything, but it cannot be renamed, replaced
            // or linked through the share; treat it as covered by no rule.
            return PathMatch::No;
        }
        if self.matcher.is_match(path) || self.dir.as_ref().is_some_and(|d| d.is_match(path)) {
            PathMatch::Direct
        } else if self.ancestors.iter().any(|a| a.is_match(path)) {
            PathMatch::Ancestor
        } else if self.deep_ancestors.iter().any(|a| a.is_match(path)) {
            PathMatch::DeepAncestor
        } else {
            PathMatch::No
        }
    }
}

/// [`BUILTIN_PROTECTED`] compiled once per process, in the same order. An `Err` would be a bug
/// in the table (tests compile every entry); callers report it rather than skip the entry.
pub(crate) fn builtin_rules() -> &'static [Result<PathRule, PathError>] {
    static RULES: OnceLock<Vec<Result<PathRule, PathError>>> = OnceLock::new();
    RULES.get_or_init(|| {
        BUILTIN_PROTECTED
            .iter()
            .map(|e| {
                let name = format!("filesystem.protected {:?}", e.pattern);
                PathRule::compile(name, e.pattern, e.anywhere, true)
            })
            .collect()
    })
}

fn is_all_globstar(glob: &str) -> bool {
    glob.split('/').all(|c| c == "**")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_maps_compatibility_forms_and_case() {
        assert_eq!(fold_name(".claude/settings.json"), None);
        assert_eq!(
            fold_name(".\u{ff23}laude/x").as_deref(),
            Some(".claude/x"),
            "fullwidth C"
        );
        assert_eq!(
            fold_name(".\u{fb01}le").as_deref(),
            Some(".file"),
            "fi ligature"
        );
        assert_eq!(fold_name(".VS\u{0421}ode"), None, "Cyrillic Es is not a C");
    }

    fn rule(glob: &str, anywhere: bool) -> PathRule {
        PathRule::compile(String::new(), glob, anywhere, true).unwrap()
    }

    #[test]
    fn normalize_rel_collapses_dots_and_slashes() {
        assert_eq!(normalize_rel("/a/./b//c/").unwrap(), "a/b/c");
        assert_eq!(normalize_rel("").unwrap(), "");
        assert_eq!(normalize_rel("/").unwrap(), "");
        assert_eq!(normalize_rel("a/../b"), Err(PathError::ParentDir));
        assert_eq!(normalize_rel("a\0b"), Err(PathError::Nul));
    }

    #[test]
    fn normalize_guest_requires_absolute() {
        assert_eq!(normalize_guest("/workspace/").unwrap(), "/workspace");
        assert_eq!(normalize_guest("//w/./x").unwrap(), "/w/x");
        assert_eq!(normalize_guest("workspace"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_guest("/a/.."), Err(PathError::ParentDir));
    }

    #[test]
    fn normalize_glob_rules() {
        assert_eq!(normalize_glob("/secrets/**").unwrap(), "secrets/**");
        assert_eq!(normalize_glob("secrets/"), Err(PathError::TrailingSlash));
        assert_eq!(normalize_glob("./"), Err(PathError::TrailingSlash));
        assert_eq!(normalize_glob("."), Err(PathError::Empty));
        assert_eq!(normalize_glob("a/../b"), Err(PathError::ParentDir));
    }

    #[test]
    fn globstar_rule_covers_dir_itself_and_ancestors() {
        let r = rule(".git/hooks/**", true);
        assert_eq!(r.check(".git/hooks/pre-commit"), PathMatch::Direct);
        assert_eq!(r.check("sub/repo/.git/hooks/x/y"), PathMatch::Direct);
        assert_eq!(r.check(".git/hooks"), PathMatch::Direct);
        assert_eq!(r.check(".GIT/Hooks/pre-commit"), PathMatch::Direct);
        assert_eq!(r.check(".git"), PathMatch::Ancestor);
        assert_eq!(r.check("sub/.git"), PathMatch::Ancestor);
        assert_eq!(r.check("sub"), PathMatch::No);
        assert_eq!(r.check(".git/objects/ab"), PathMatch::No);
        assert_eq!(r.check(""), PathMatch::No);
    }

    #[test]
    fn anchored_rule_matches_only_at_root() {
        let r = rule(".bashrc", false);
        assert_eq!(r.check(".bashrc"), PathMatch::Direct);
        assert_eq!(r.check("dotfiles/.bashrc"), PathMatch::No);
        let r = rule("deploy/keys/*.pem", false);
        assert_eq!(r.check("deploy/keys/a.pem"), PathMatch::Direct);
        assert_eq!(r.check("deploy/keys/sub/a.pem"), PathMatch::No);
        assert_eq!(r.check("deploy"), PathMatch::Ancestor);
        assert_eq!(r.check("deploy/keys"), PathMatch::Ancestor);
    }

    #[test]
    fn prefixes_ending_in_globstar_are_deep_ancestors() {
        let r = rule(".git/modules/**/config", true);
        assert_eq!(r.check(".git/modules/lib/config"), PathMatch::Direct);
        assert_eq!(r.check(".git/modules/a/b/config"), PathMatch::Direct);
        assert_eq!(r.check(".git/modules"), PathMatch::Ancestor);
        assert_eq!(r.check(".git/modules/lib"), PathMatch::DeepAncestor);
        assert_eq!(
            r.check(".git/modules/lib/objects/ab"),
            PathMatch::DeepAncestor
        );
        assert_eq!(r.check(".git/objects/ab"), PathMatch::No);
    }

    #[test]
    fn bad_glob_is_reported() {
        let e = PathRule::compile(String::new(), "a[", false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid glob: unclosed character class; missing ']'"
        );
    }

    #[test]
    fn builtin_patterns_compile_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in BUILTIN_PROTECTED {
            assert!(seen.insert(p.pattern), "duplicate {}", p.pattern);
            assert_eq!(normalize_glob(p.pattern).unwrap(), p.pattern);
            PathRule::compile(String::new(), p.pattern, p.anywhere, true).unwrap();
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::BUILTIN_PROTECTED;

    #[test]
    fn the_security_model_lists_every_built_in_protected_path() {
        let doc = include_str!("../../../docs/security-model.md");
        for e in BUILTIN_PROTECTED {
            let row = format!("| `{}` | ", e.pattern);
            assert!(
                doc.contains(&row),
                "docs/security-model.md lacks {}",
                e.pattern
            );
        }
    }
}
