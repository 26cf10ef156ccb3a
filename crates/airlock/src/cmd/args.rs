//! What the commands share on their command lines: how a command runs in the guest, and the
//! parsers of values clap cannot check alone.

use clap::Args;
use std::time::Duration;

/// How a command runs in the guest: shared by `airlock run` and `airlock exec`.
#[derive(Debug, Args)]
pub struct CommandArgs {
    /// Allocate a pseudo-terminal in the guest (puts this terminal in raw mode); the default
    /// when stdin and stdout are both terminals.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// No pseudo-terminal, even on a terminal.
    #[arg(short = 'T', long, conflicts_with = "tty")]
    pub no_tty: bool,
    /// Set an environment variable in the guest (KEY=VALUE, or KEY to pass this host's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the guest (absolute path; default: the workspace).
    #[arg(short = 'w', long, value_name = "DIR", value_parser = parse_workdir)]
    pub workdir: Option<String>,
    /// Let the command's output set this terminal's window title and clipboard. Without it,
    /// airlock removes those escape sequences (OSC 0, 1, 2, 52 and their relatives) from what
    /// it prints and passes everything else unchanged.
    #[arg(long)]
    pub allow_title_and_clipboard: bool,
    /// The command and its arguments (an imported OCI image runs its Entrypoint and Cmd when
    /// none is given).
    #[arg(
        required = false,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

impl CommandArgs {
    /// Whether the command gets a pseudo-terminal: `-t`, or both stdin and stdout are
    /// terminals and `-T` was not given.
    pub fn wants_tty(&self) -> bool {
        use std::io::IsTerminal;
        self.tty
            || (!self.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal())
    }
}

pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => match std::env::var(s) {
            Ok(v) => (s.to_string(), v),
            Err(_) => {
                return Err(format!(
                    "'{s}' has no '=' and is not set on the host; use KEY=VALUE"
                ));
            }
        },
    };
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        return Err(format!(
            "'{s}': expected KEY=VALUE with a non-empty KEY and no NUL bytes"
        ));
    }
    Ok((k, v))
}

pub(crate) fn parse_workdir(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.contains('\0') {
        return Err(format!("'{s}' must be an absolute path inside the guest"));
    }
    Ok(s.to_string())
}

/// `30s`, `15m`, `2h`, `1d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m, h or d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").unwrap_err().contains("non-empty KEY"));
        assert!(
            parse_env("AIRLOCK_SURELY_UNSET_VAR")
                .unwrap_err()
                .contains("not set on the host")
        );
    }

    #[test]
    fn workdir_must_be_absolute() {
        assert_eq!(parse_workdir("/tmp"), Ok("/tmp".into()));
        assert!(parse_workdir("tmp").unwrap_err().contains("absolute"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
    }
}
